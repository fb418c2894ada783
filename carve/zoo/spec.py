"""The architecture spec: one declarative, serialisable description of a backbone.

A spec is a tree of frozen dataclasses (stem, stages of blocks, head, normalisation) that
round-trips exactly through JSON/YAML and carries a stable hash. Every channel count is explicit,
so a pruned or searched network is just another spec. On load, conveniences are accepted and
resolved (``expansion`` instead of ``mid_channels``, an SE ``ratio`` instead of ``channels``);
everything is validated, and errors name the field path and the bad value.

Fields added after a kind existed (``optional`` below) are left out of the plain data while they
hold their default, so the JSON and the hash of every earlier spec stay what they were.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ACTIVATIONS = ("relu", "relu6", "hardswish", "silu", "none")
GATES = ("sigmoid", "hardsigmoid")
BLOCK_KINDS = ("conv", "ds", "ir", "shuffle", "uib", "fused", "fire", "mobileone", "shuffle_v1")
SKIPS = ("auto", "none", "partial")
PADDINGS = ("symmetric", "same")
POOLINGS = ("pad", "ceil")
NORMS = ("batch", "none")
STEMS = ("conv", "mobileone")
CLASSIFIERS = ("linear", "conv")

SPEC_VERSION = 1


class SpecError(ValueError):
    """An invalid architecture spec; the message names the field and the bad value."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


def optional(default: Any) -> Any:
    """A field left out of the plain data (JSON, YAML, hash) while it holds ``default``."""
    return field(default=default, metadata={"optional": True})


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to a multiple of ``divisor``, never dropping more than 10% (TF/timm rule)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


@dataclass(frozen=True)
class NormSpec:
    """Batch-norm settings; peers differ (torchvision MobileNetV3: eps 1e-3, momentum 0.01).

    ``kind``: ``batch`` (BatchNorm after every conv) or ``none`` (convs carry a bias and nothing
    normalises them, as in SqueezeNet).
    """

    eps: float = 1e-5
    momentum: float = 0.1
    kind: str = optional("batch")


@dataclass(frozen=True)
class SESpec:
    """Squeeze-and-excitation: pool, 1x1 reduce (+BN), act, 1x1 expand, gate."""

    channels: int
    act: str = "relu"
    gate: str = "sigmoid"
    norm: bool = False


@dataclass(frozen=True)
class BlockSpec:
    """One block of the body.

    kind ``conv``: conv-BN-act. ``ds``: depthwise conv-BN-act, [SE], pointwise conv-BN-[act].
    ``ir``: [1x1 expand conv-BN-act], depthwise conv-BN-[dw_act], [SE], 1x1 project conv-BN
    (no expand conv when ``mid_channels`` equals the input width). ``shuffle``: ShuffleNetV2 unit
    (channel split at stride 1, two branches at stride 2, concat and channel shuffle).
    ``skip``: ``auto`` adds the input when stride is 1 and widths match, ``partial`` also when the
    block widens (added to the first input-width channels, as in ReXNet), ``none`` never.

    Later kinds:
    ``uib``: MobileNetV4's Universal Inverted Bottleneck: [depthwise ``start_kernel`` conv-BN],
    1x1 expand conv-BN-act (always), [depthwise ``kernel`` conv-BN-act], [SE], 1x1 project
    conv-BN, [depthwise ``end_kernel`` conv-BN]; a kernel of 0 leaves that depthwise conv out
    (``kernel`` 0 with ``start_kernel`` 3 is the ConvNeXt-like variant, both 0 the FFN). The
    stride goes to the middle depthwise conv, else the start one, else the end one.
    ``fused``: fused-MBConv (EfficientNetV2, MobileNetV4's FusedIB): ``kernel`` x ``kernel``
    expand conv-BN-act, [SE], 1x1 project conv-BN.
    ``fire``: SqueezeNet's Fire module: 1x1 squeeze conv-act to ``mid_channels``, then 1x1 and
    ``kernel`` x ``kernel`` expand convs, each ``out_channels / 2`` wide, act, concatenated; stride
    2 max-pools (3x3/2) before the squeeze, where SqueezeNet pools.
    ``mobileone``: MobileOne's re-parameterisable block: ``branches`` ``kernel`` x ``kernel``
    conv-BN branches, a 1x1 conv-BN scale branch (when ``kernel`` > 1) and a BN identity branch
    (when the shapes allow and ``skip`` is not ``none``), summed, [SE], act; ``groups`` is the
    conv's group count (the input width makes it depthwise). ``reparameterize()`` turns it into
    one conv with bias computing the same function.
    ``shuffle_v1``: ShuffleNetV1 unit: grouped 1x1 conv-BN-act to ``mid_channels`` (``first_groups``
    groups, 0 meaning ``groups``), channel shuffle, depthwise conv-BN, grouped 1x1 conv-BN; stride 1
    adds the input, stride 2 concatenates a 3x3/2 average pool of it (the branch then makes
    ``out_channels`` minus the input width); act after.
    """

    kind: str
    out_channels: int
    kernel: int = 3
    stride: int = 1
    act: str = "relu"
    mid_channels: int | None = None
    dw_act: str | None = None
    se: SESpec | None = None
    se_before_dw_act: bool = False
    pw_act: bool = False
    skip: str = "auto"
    start_kernel: int = optional(0)
    end_kernel: int = optional(0)
    groups: int = optional(1)
    first_groups: int = optional(0)
    branches: int = optional(1)

    @property
    def dw_activation(self) -> str:
        return self.act if self.dw_act is None else self.dw_act


@dataclass(frozen=True)
class StemSpec:
    """Stem: one conv-BN-act, optionally followed by a 3x3/2 max pool (ShuffleNetV2).

    ``kind`` ``mobileone``: MobileOne's stem, a re-parameterisable block (one ``kernel`` conv-BN
    branch and a 1x1 conv-BN branch, summed, act). ``pad`` false: the conv is not padded (SqueezeNet).
    """

    channels: int
    kernel: int = 3
    stride: int = 2
    act: str = "relu"
    pool: bool = False
    kind: str = optional("conv")
    pad: bool = optional(True)


@dataclass(frozen=True)
class StageSpec:
    blocks: tuple[BlockSpec, ...]


@dataclass(frozen=True)
class HeadSpec:
    """Head: [1x1 conv-BN-act], global average pool, [linear+act with bias], dropout, classifier.

    ``fc_norm``: the layer after pooling is a linear map without bias, then BN, then act
    (MobileNetV4's head). ``classifier`` ``conv``: the classifier is a 1x1 conv with bias and ReLU
    applied before the pool (SqueezeNet's conv10); dropout comes before it.
    """

    conv_channels: int = 0
    conv_act: str = "relu"
    fc_channels: int = 0
    fc_act: str = "hardswish"
    dropout: float = 0.2
    num_classes: int = 1000
    fc_norm: bool = optional(False)
    classifier: str = optional("linear")


@dataclass(frozen=True)
class ArchSpec:
    """A whole backbone. ``family`` and ``name`` are labels; the rest defines the module tree.

    ``pooling``: how the max pools (stem pool, Fire downsampling) treat borders: ``pad`` pads by
    one, ``ceil`` pads nothing and rounds the output size up (Caffe's rule, SqueezeNet's).
    """

    name: str
    family: str
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    norm: NormSpec = field(default_factory=NormSpec)
    padding: str = "symmetric"
    in_channels: int = 3
    drop_path_rate: float = 0.0
    version: int = SPEC_VERSION
    pooling: str = optional("pad")

    # -- derived views -------------------------------------------------------------------------
    @property
    def blocks(self) -> list[BlockSpec]:
        return [b for s in self.stages for b in s.blocks]

    @property
    def num_features(self) -> int:
        """Width of the pooled feature vector fed to the classifier."""
        if self.head.fc_channels:
            return self.head.fc_channels
        if self.head.conv_channels:
            return self.head.conv_channels
        return self.body_channels

    @property
    def body_channels(self) -> int:
        blocks = self.blocks
        return blocks[-1].out_channels if blocks else self.stem.channels

    def block_inputs(self) -> list[int]:
        """Input width of each block, in order."""
        widths, cin = [], self.stem.channels
        for b in self.blocks:
            widths.append(cin)
            cin = b.out_channels
        return widths

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def hash(self) -> str:
        """Stable 16-hex-digit hash of everything that defines the module tree (not the name)."""
        data = self.to_dict()
        data.pop("name")
        data.pop("family")
        canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> ArchSpec:
        return replace(self, **changes)

    def with_num_classes(self, num_classes: int) -> ArchSpec:
        return replace(self, head=replace(self.head, num_classes=num_classes))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        text = self.to_json() if path.suffix != ".yaml" else _yaml_dump(self.to_dict())
        path.write_text(text)
        return path


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("optional") and value == f.default:
                continue
            out[f.name] = _to_plain(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [_to_plain(x) for x in obj]
    return obj


def _yaml_dump(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
