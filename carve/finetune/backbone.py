"""Adapter from a zoo backbone (``features_only``) to torchvision detection models.

The adapter returns an ``OrderedDict`` of feature maps at chosen total strides (the last layer at
each stride, from ``feature_info``). One documented extension: ``expansion_tap=True`` replaces the
stride-16 map by the output of the 1x1 expansion conv of the first stride-32 inverted residual,
as torchvision's published SSDLite320-MobileNetV3 taps its C4 block (wider than the block output,
computed anyway). Families whose stride-32 block has no expansion conv (ShuffleNet) fall back to
the block output; ``tap_kind`` records which was used.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from carve.zoo import ArchSpec, create_model


class DetectionBackbone(nn.Module):
    """Zoo feature extractor returning ``OrderedDict("0": map at strides[0], ...)``."""

    def __init__(self, model: str | Path | ArchSpec | dict, strides: Sequence[int] = (16, 32),
                 pretrained: bool | str = False, expansion_tap: bool = False):
        super().__init__()
        self.body = create_model(model, pretrained=pretrained, features_only=True)
        self.spec: ArchSpec = self.body.spec
        self.pretrained_cfg = dict(getattr(self.body, "pretrained_cfg", {}))
        info = self.body.feature_info
        by_stride = {p["reduction"]: p for p in info}
        missing = [s for s in strides if s not in by_stride]
        if missing:
            raise ValueError(f"strides: {self.spec.name} has feature maps at {sorted(by_stride)}, not {missing}")
        self.strides = list(strides)
        self.taps = [by_stride[s]["module"] for s in strides]
        self.out_channels = [by_stride[s]["num_chs"] for s in strides]
        self.tap_kind = ["block"] * len(strides)
        self._expansion_block = None
        if expansion_tap and 16 in strides:
            found = self._first_block_at(32)
            if found is not None:
                block = self.body.blocks[found[0]][found[1]]
                if isinstance(getattr(block, "conv_pw", None), nn.Sequential) and hasattr(block, "after_expansion"):
                    i = self.strides.index(16)
                    self._expansion_block = f"blocks.{found[0]}.{found[1]}"
                    self.taps[i] = self._expansion_block + ".conv_pw"
                    self.out_channels[i] = block.conv_pw.conv.out_channels
                    self.tap_kind[i] = "expansion"
        self._last = max(self._block_index(t) for t in self.taps)

    def _first_block_at(self, stride: int) -> tuple[int, int] | None:
        reduction = self.spec.stem.stride * (2 if self.spec.stem.pool else 1)
        for si, stage in enumerate(self.spec.stages):
            for bi, block in enumerate(stage.blocks):
                if block.stride == 2:
                    reduction *= 2
                    if reduction == stride:
                        return si, bi
        return None

    def _block_index(self, tap: str) -> tuple[int, int]:
        if tap in ("stem", "stem_pool"):
            return (-1, -1)
        si, bi = tap.split(".")[1:3]
        return int(si), int(bi)

    def stage_modules(self) -> list[nn.Module]:
        """Stem (with its pool) followed by the stages, the units of the freezing policy."""
        return [nn.ModuleList([self.body.stem, self.body.stem_pool]), *self.body.blocks]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        x = found["stem"] = self.body.stem(x)
        x = found["stem_pool"] = self.body.stem_pool(x)
        for si, stage in enumerate(self.body.blocks):
            if si > self._last[0]:
                break
            for bi, block in enumerate(stage):
                name = f"blocks.{si}.{bi}"
                if name == self._expansion_block:  # the expansion is computed once, tapped and carried on
                    expanded = found[name + ".conv_pw"] = block.conv_pw(x)
                    x = block.after_expansion(expanded, x)
                else:
                    x = block(x)
                found[name] = x
                if (si, bi) == self._last:
                    break
        return OrderedDict((str(i), found[t]) for i, t in enumerate(self.taps))


def freeze_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d inside ``module`` by a FrozenBatchNorm2d with the same statistics."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_bn(child)
    return module


def freeze_stages(parts: Sequence[nn.Module], policy: str | int = "none") -> int:
    """Freeze by policy over ``parts`` (stem first, then stages): ``none``, ``stem``, ``all`` or N
    (stem and the first N stages). Frozen parts get FrozenBatchNorm2d. Returns frozen parameters."""
    if policy in ("none", 0, "0"):
        n = 0
    elif policy == "stem":
        n = 1
    elif policy == "all":
        n = len(parts)
    else:
        try:
            n = 1 + int(policy)
        except (TypeError, ValueError):
            raise ValueError(f"freeze: expected none, stem, all or a number of stages, got {policy!r}") from None
        if not 0 <= n - 1 <= len(parts) - 1:
            raise ValueError(f"freeze: {policy} stages requested, the backbone has {len(parts) - 1}")
    frozen = 0
    for part in parts[:n]:
        freeze_bn(part)
        for p in part.parameters():
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


def apply_freeze(backbone: DetectionBackbone, policy: str | int = "none", frozen_bn: bool = False) -> int:
    """:func:`freeze_stages` on the adapter; ``frozen_bn`` also freezes the statistics of the whole
    backbone (as torchvision's Faster R-CNN does). Returns the number of frozen parameters."""
    frozen = freeze_stages(backbone.stage_modules(), policy)
    if frozen_bn:
        freeze_bn(backbone)
    return frozen


def thaw_bn(module: nn.Module, momentum: float = 0.1) -> nn.Module:
    """Turn FrozenBatchNorm2d back into BatchNorm2d with the same statistics (for saving plain weights)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, FrozenBatchNorm2d):
            bn = nn.BatchNorm2d(child.weight.numel(), eps=child.eps, momentum=momentum)
            with torch.no_grad():
                bn.weight.copy_(child.weight)
                bn.bias.copy_(child.bias)
                bn.running_mean.copy_(child.running_mean)
                bn.running_var.copy_(child.running_var)
            setattr(module, name, bn.to(child.weight.device))
        else:
            thaw_bn(child, momentum)
    return module
