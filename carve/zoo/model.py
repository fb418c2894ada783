"""The one network class, built from an ArchSpec, and its multi-scale feature variant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .blocks import build_block
from .layers import ConvNormAct, PooledConvNormAct, create_act, max_pool
from .mobileone import MobileOneBlock, reparameterize
from .spec import ArchSpec, HeadSpec
from .validation import validate


@dataclass(frozen=True)
class FeaturePoint:
    """Where a feature map is taken: module name, width and total stride."""

    module: str
    num_chs: int
    reduction: int


def feature_points(spec: ArchSpec) -> list[FeaturePoint]:
    """The last layer at each total stride: stem, stem pool (if any), then blocks.

    A point is dropped when a later layer has the same stride, so a stem pool makes the stem
    conv's own output the stride-2 map (timm's convention: five maps, strides 2 to 32).
    """
    points: list[FeaturePoint] = []
    reduction = spec.stem.stride
    current = FeaturePoint("stem", spec.stem.channels, reduction)
    if spec.stem.pool:
        points.append(current)
        reduction *= 2
        current = FeaturePoint("stem_pool", spec.stem.channels, reduction)
    for si, stage in enumerate(spec.stages):
        for bi, block in enumerate(stage.blocks):
            if block.stride == 2:
                points.append(current)
                reduction *= 2
            current = FeaturePoint(f"blocks.{si}.{bi}", block.out_channels, reduction)
    points.append(current)
    return points


class FeatureInfo:
    """timm-style description of the feature maps a features_only model returns."""

    def __init__(self, points: Sequence[FeaturePoint], out_indices: Sequence[int]):
        self.points = list(points)
        self.out_indices = tuple(out_indices)
        self.info = [dict(num_chs=p.num_chs, reduction=p.reduction, module=p.module) for p in self.points]

    def _select(self, key: str, idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._select("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._select("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._select("module", idx)

    def get_dicts(self) -> list[dict[str, Any]]:
        return [self.info[i] for i in self.out_indices]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.info[i]

    def __len__(self) -> int:
        return len(self.info)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.info)


class CarveNet(nn.Module):
    """A backbone + classifier built from an ArchSpec (timm-compatible interface)."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = validate(spec)
        norm, pad = spec.norm, spec.padding
        st = spec.stem
        if st.kind == "mobileone":
            self.stem = MobileOneBlock.stem(st, spec.in_channels, norm, pad)
        else:
            self.stem = ConvNormAct(spec.in_channels, st.channels, st.kernel, st.stride, act=st.act, norm=norm,
                                    padding=pad if st.pad else "valid")
        self.stem_pool = max_pool(spec.pooling) if st.pool else nn.Identity()
        n_blocks = len(spec.blocks)
        stages, cin, idx = [], st.channels, 0
        for stage in spec.stages:
            blocks = []
            for b in stage.blocks:
                dpr = spec.drop_path_rate * idx / n_blocks
                blocks.append(build_block(b, cin, norm, pad, dpr, spec.pooling))
                cin, idx = b.out_channels, idx + 1
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        h = spec.head
        self.head_conv = ConvNormAct(cin, h.conv_channels, 1, act=h.conv_act, norm=norm) if h.conv_channels else nn.Identity()
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        pooled = h.conv_channels or cin
        if h.fc_channels and h.fc_norm:
            self.head_fc = PooledConvNormAct(pooled, h.fc_channels, act=h.fc_act, norm=norm)
        elif h.fc_channels:
            self.head_fc = nn.Sequential(nn.Linear(pooled, h.fc_channels), create_act(h.fc_act))
        else:
            self.head_fc = nn.Identity()
        self.head_drop = nn.Dropout(h.dropout) if h.dropout > 0 else nn.Identity()
        self.num_features = spec.num_features
        self.head_hidden_size = self.num_features
        self.num_classes = h.num_classes
        self.classifier = _classifier(h, self.num_features, h.num_classes)
        self._classifies_first = h.classifier == "conv"  # SqueezeNet: classify every position, then pool
        self.feature_info = FeatureInfo(feature_points(spec), range(len(feature_points(spec))))
        self.pretrained_cfg: dict[str, Any] = {}
        init_weights(self)

    # -- timm-style interface --------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(self.stem(x))
        x = self.blocks(x)
        return self.head_conv(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self._classifies_first:
            if pre_logits or not self.num_classes:
                return self.global_pool(x)
            return self.global_pool(torch.relu(self.classifier(self.head_drop(x))))
        x = self.head_drop(self.head_fc(self.global_pool(x)))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (0 removes it); the spec follows."""
        self.num_classes = num_classes
        self.spec = self.spec.with_num_classes(num_classes)
        self.classifier = _classifier(self.spec.head, self.num_features, num_classes)

    def reparameterize(self) -> int:
        """Switch re-parameterisable blocks (MobileOne) to their deployed single-conv form, in
        place; the outputs stay the same. Returns how many blocks were switched."""
        return reparameterize(self)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            raise NotImplementedError("gradient checkpointing is not supported by carve models")

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^blocks\.(\d+)" if coarse else r"^blocks\.(\d+)\.(\d+)")


class CarveFeatures(nn.Module):
    """Backbone that returns the feature maps at ``out_indices`` of ``feature_points(spec)``.

    Module names equal those of CarveNet, so a classifier's weights load into it (head ignored).
    ``body``: an already built CarveNet of ``spec`` whose modules (and weights) are taken over.
    """

    def __init__(self, spec: ArchSpec, out_indices: Sequence[int] | None = None, body: CarveNet | None = None):
        super().__init__()
        self.spec = validate(spec)
        points = feature_points(spec)
        if out_indices is None:
            out_indices = range(len(points))
        out_indices = [i if i >= 0 else len(points) + i for i in out_indices]
        for i in out_indices:
            if not 0 <= i < len(points):
                raise ValueError(f"out_indices: {i} is out of range for {len(points)} feature maps "
                                 f"(reductions {[p.reduction for p in points]})")
        self.feature_info = FeatureInfo(points, out_indices)
        full = body if body is not None else CarveNet(spec)
        self.stem, self.stem_pool = full.stem, full.stem_pool
        self._taps = {points[i].module for i in out_indices}
        last = max(out_indices)
        last_name = points[last].module
        if last_name in ("stem", "stem_pool"):
            self.blocks = nn.Sequential()
        else:
            si, bi = (int(v) for v in last_name.split(".")[1:])
            stages = [full.blocks[s] for s in range(si)] + [full.blocks[si][: bi + 1]]
            self.blocks = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        x = self.stem(x)
        if "stem" in self._taps:
            outs.append(x)
        x = self.stem_pool(x)
        if "stem_pool" in self._taps:
            outs.append(x)
        for si, stage in enumerate(self.blocks):
            for bi, block in enumerate(stage):
                x = block(x)
                if f"blocks.{si}.{bi}" in self._taps:
                    outs.append(x)
        return outs


def _classifier(head: HeadSpec, features: int, num_classes: int) -> nn.Module:
    """A linear classifier, or SqueezeNet's 1x1 conv with bias (before the pool)."""
    if not num_classes:
        return nn.Identity()
    if head.classifier == "conv":
        return nn.Conv2d(features, num_classes, 1)
    return nn.Linear(features, num_classes)


def init_weights(model: nn.Module) -> None:
    """He init for convs (fan-out), ones/zeros for BN, small uniform for linears (as timm)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / (m.weight.shape[1] ** 0.5)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
