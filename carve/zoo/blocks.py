"""Building blocks of the body, one class per block kind of the spec."""

from __future__ import annotations

import torch
from torch import nn

from .bottlenecks import FireModule, FusedMBConv, UniversalInvertedBottleneck
from .layers import ConvNormAct, DropPath, create_act
from .mobileone import MobileOneBlock
from .residual import Residual, se_module
from .spec import BlockSpec, NormSpec




class ConvBlock(ConvNormAct):
    """A plain conv-BN-act block."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__(cin, spec.out_channels, spec.kernel, spec.stride, act=spec.act, norm=norm, padding=padding)


class DepthwiseSeparable(Residual):
    """MobileNetV1 block: depthwise conv-BN-act, [SE], pointwise conv-BN-[act]."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        self.conv_dw = ConvNormAct(cin, cin, spec.kernel, spec.stride, groups=cin, act=spec.dw_activation,
                                   norm=norm, padding=padding)
        self.se = se_module(spec, cin, norm) or nn.Identity()
        self.conv_pw = ConvNormAct(cin, spec.out_channels, 1, act=spec.act if spec.pw_act else "none", norm=norm)
        self._has_se = spec.se is not None
        self._init_skip(spec, cin, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x)
        if self._has_se:
            y = self.se(y)
        return self._add(self.conv_pw(y), x)


class InvertedResidual(Residual):
    """MBConv: [1x1 expand], depthwise, [SE], linear 1x1 project, residual when shapes allow."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        mid = spec.mid_channels
        self.conv_pw = ConvNormAct(cin, mid, 1, act=spec.act, norm=norm) if mid != cin else nn.Identity()
        dw_act = "none" if spec.se_before_dw_act else spec.dw_activation
        self.conv_dw = ConvNormAct(mid, mid, spec.kernel, spec.stride, groups=mid, act=dw_act, norm=norm,
                                   padding=padding)
        self.se = se_module(spec, mid, norm) or nn.Identity()
        self.act_dw = create_act(spec.dw_activation) if spec.se_before_dw_act else nn.Identity()
        self.conv_pwl = ConvNormAct(mid, spec.out_channels, 1, act="none", norm=norm)
        self._expands, self._has_se, self._post_se_act = mid != cin, spec.se is not None, spec.se_before_dw_act
        self._init_skip(spec, cin, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_expansion(self.conv_pw(x) if self._expands else x, x)

    def after_expansion(self, expanded: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The block's output from ``expanded``, its 1x1 expansion of the input ``x``."""
        y = self.conv_dw(expanded)
        if self._has_se:
            y = self.se(y)
        if self._post_se_act:
            y = self.act_dw(y)
        return self._add(self.conv_pwl(y), x)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or two branches (stride 2), concat, shuffle."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        self.stride = spec.stride
        half = spec.out_channels // 2
        k, act = spec.kernel, spec.act
        if self.stride == 2:
            self.branch1 = nn.Sequential(
                ConvNormAct(cin, cin, k, 2, groups=cin, act="none", norm=norm, padding=padding),
                ConvNormAct(cin, half, 1, act=act, norm=norm),
            )
        else:
            self.branch1 = nn.Identity()
        b2_in = cin if self.stride == 2 else half
        self.branch2 = nn.Sequential(
            ConvNormAct(b2_in, half, 1, act=act, norm=norm),
            ConvNormAct(half, half, k, self.stride, groups=half, act="none", norm=norm, padding=padding),
            ConvNormAct(half, half, 1, act=act, norm=norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleV1Unit(nn.Module):
    """ShuffleNetV1 unit (Zhang et al. 2018, Fig. 2b/c): grouped 1x1 conv, channel shuffle,
    depthwise conv, grouped 1x1 conv; stride 1 adds the input, stride 2 concatenates its 3x3/2
    average pool; act after the merge."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        self.stride, self.groups = spec.stride, spec.groups
        mid, k = spec.mid_channels, spec.kernel
        branch = spec.out_channels - cin if spec.stride == 2 else spec.out_channels
        self.conv_pw = ConvNormAct(cin, mid, 1, groups=spec.first_groups or spec.groups, act=spec.act, norm=norm)
        self.conv_dw = ConvNormAct(mid, mid, k, spec.stride, groups=mid, act="none", norm=norm, padding=padding)
        self.conv_pwl = ConvNormAct(mid, branch, 1, groups=spec.groups, act="none", norm=norm)
        self.pool = nn.AvgPool2d(3, 2, 1) if spec.stride == 2 else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 and spec.stride == 1 else nn.Identity()
        self.act = create_act(spec.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pw(x)
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        y = self.conv_pwl(self.conv_dw(y))
        if self.stride == 1:
            return self.act(self.drop_path(y) + x)
        return self.act(torch.cat((self.pool(x), y), dim=1))


BLOCKS: dict[str, type[nn.Module]] = {
    "conv": ConvBlock,
    "ds": DepthwiseSeparable,
    "ir": InvertedResidual,
    "shuffle": ShuffleUnit,
    "uib": UniversalInvertedBottleneck,
    "fused": FusedMBConv,
    "fire": FireModule,
    "mobileone": MobileOneBlock,
    "shuffle_v1": ShuffleV1Unit,
}


def build_block(spec: BlockSpec, cin: int, norm: NormSpec, padding: str = "symmetric",
                drop_path: float = 0.0, pooling: str = "pad") -> nn.Module:
    """Instantiate the module for one block spec with input width ``cin`` (``pooling``: the spec's
    max-pool rule, for the blocks that pool)."""
    if spec.kind == "fire":
        return FireModule(spec, cin, norm, padding, drop_path, pooling=pooling)
    return BLOCKS[spec.kind](spec, cin, norm, padding, drop_path)
