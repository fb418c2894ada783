"""Weight clustering (palettisation): every convolution and linear weight replaced by the nearest of
``2 ** bits`` values (k-means), one palette per tensor or per group of output channels.

The clustered model computes in float, so its accuracy is measured in PyTorch as is; what shrinks
is the stored size: ``bits`` per weight for the indices plus the palettes, which Core ML stores as
such (``export_mlpackage`` writes lookup tables and indices). k-means is coremltools'
``PostTrainingPalettizer``; BatchNorm is folded first (``fold`` for carve models, torch.fx fusion for
other modules), so the palette is that of the weights the deployed model holds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from carve.zoo import ArchSpec

from .folding import fold, fold_any

CLUSTER_BITS = (1, 2, 3, 4, 6, 8)  # the palette sizes Core ML stores (2, 4, ..., 256 entries)
LUT = "_COREML_/weight/lut"  # where coremltools keeps a layer's palettes (groups x ... x entries x 1)


def check_bits(bits: Any, group_size: Any = 0) -> tuple[int, int]:
    """``(bits, group_size)`` validated: bits one of ``CLUSTER_BITS``, group_size >= 0 (0: per tensor)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in CLUSTER_BITS:
        raise ValueError(f"cluster_bits: expected one of {list(CLUSTER_BITS)}, got {bits!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 0:
        raise ValueError(f"cluster_group_size: expected an integer >= 0 (0: one palette per tensor), "
                         f"got {group_size!r}")
    return bits, group_size


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def cluster(model: nn.Module, spec: ArchSpec | None = None, bits: int = 8, group_size: int = 0,
            ) -> tuple[nn.Module, ArchSpec | None]:
    """A copy of ``model`` (BatchNorm folded) whose convolution and linear weights
    each hold at most ``2 ** bits`` distinct values per palette: one palette per tensor
    (``group_size`` 0) or per ``group_size`` output channels. Layers whose output channels
    ``group_size`` does not divide keep float weights and are listed in ``model.cluster_skipped``;
    ``model.cluster_layers`` names the clustered ones. Returns ``(model, spec)``."""
    from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig

    bits, group_size = check_bits(bits, group_size)
    spec = spec or getattr(model, "spec", None)
    base = fold(model, spec)[0] if spec is not None else fold_any(model)
    granularity = ({"granularity": "per_grouped_channel", "group_size": group_size, "channel_axis": 0}
                   if group_size else {"granularity": "per_tensor"})
    config = PostTrainingPalettizerConfig.from_dict({"global_config": {"n_bits": bits, **granularity}})
    quiet = logging.root.manager.disable
    logging.disable(logging.INFO)  # coremltools' k-means logs every layer and its progress at INFO
    try:
        out = PostTrainingPalettizer(base, config).compress(inplace=True).eval()
    finally:
        logging.disable(quiet)
    layers = _weight_layers(out)
    out.cluster_layers = [n for n, m in layers if hasattr(m, LUT)]
    out.cluster_skipped = [n for n, m in layers if not hasattr(m, LUT)]
    out.cluster_bits, out.cluster_group_size = bits, group_size
    out.carve_steps = list(getattr(model, "carve_steps", [])) + [f"cluster(bits={bits}, group_size={group_size})"]
    return out, spec


@dataclass
class ClusteredSize:
    """Stored size of a clustered model: indices at ``bits`` per weight plus FP32 palettes, and every
    other tensor (biases, unclustered layers) in its own dtype."""

    float_bytes: int  # the same model with every tensor in its own dtype (FP32)
    packed_bytes: int
    clustered_tensors: int
    clustered_elements: int
    palettes: int

    @property
    def ratio(self) -> float:
        return self.float_bytes / self.packed_bytes

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), ratio=round(self.ratio, 3))


def clustered_size(model: nn.Module) -> ClusteredSize:
    """The size ``model`` takes stored as indices plus palettes (its clustered layers) and as is (the rest)."""
    tensors = {n: t for n, t in list(model.named_parameters()) + list(model.named_buffers()) if "_COREML_" not in n}
    float_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    packed, count, elements, palettes = float_bytes, 0, 0, 0
    for _, m in _weight_layers(model):
        lut = getattr(m, LUT, None)
        if lut is None:
            continue
        entries = lut.shape[-2]
        index_bits = max(1, math.ceil(math.log2(entries)))
        w = m.weight
        packed += math.ceil(w.numel() * index_bits / 8) + lut.numel() * 4 - w.numel() * w.element_size()
        count, elements, palettes = count + 1, elements + w.numel(), palettes + lut.numel() // (entries * lut.shape[-1])
    return ClusteredSize(float_bytes=float_bytes, packed_bytes=packed, clustered_tensors=count,
                         clustered_elements=elements, palettes=palettes)


def distinct_per_palette(layer: nn.Module, group_size: int = 0) -> int:
    """The largest number of distinct weight values in one palette's share of ``layer``'s weight (the whole
    tensor, or each ``group_size`` output channels)."""
    w = layer.weight.detach()
    groups = w.reshape(w.shape[0], -1).split(group_size or w.shape[0])
    return max(int(torch.unique(g).numel()) for g in groups)
