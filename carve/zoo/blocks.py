"""Building blocks of the body, one class per block kind of the spec."""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvNormAct, DropPath, SqueezeExcite, create_act
from .spec import BlockSpec, NormSpec


def _se(spec: BlockSpec, channels: int, norm: NormSpec) -> nn.Module | None:
    if spec.se is None:
        return None
    return SqueezeExcite(channels, spec.se.channels, spec.se.act, spec.se.gate, norm if spec.se.norm else None)


def _has_skip(spec: BlockSpec, cin: int) -> bool:
    if spec.skip == "none" or spec.stride != 1:
        return False
    if spec.skip == "partial":
        return cin <= spec.out_channels
    return cin == spec.out_channels


class ConvBlock(ConvNormAct):
    """A plain conv-BN-act block."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__(cin, spec.out_channels, spec.kernel, spec.stride, act=spec.act, norm=norm, padding=padding)


class _Residual(nn.Module):
    """Adds the shortcut (fully or into the first input-width channels) with stochastic depth."""

    in_channels: int
    has_skip: bool
    partial: bool

    def _init_skip(self, spec: BlockSpec, cin: int, drop_path: float) -> None:
        self.in_channels = cin
        self.has_skip = _has_skip(spec, cin)
        self.partial = self.has_skip and cin != spec.out_channels
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()
        self._drops = self.has_skip and drop_path > 0

    def _add(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        # Placeholders (Identity) are skipped by flags: each eager module call costs a few us.
        if not self.has_skip:
            return x
        if self._drops:
            x = self.drop_path(x)
        if self.partial:
            c = self.in_channels
            return torch.cat([x[:, :c] + shortcut, x[:, c:]], dim=1)
        return x + shortcut


class DepthwiseSeparable(_Residual):
    """MobileNetV1 block: depthwise conv-BN-act, [SE], pointwise conv-BN-[act]."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        self.conv_dw = ConvNormAct(cin, cin, spec.kernel, spec.stride, groups=cin, act=spec.dw_activation,
                                   norm=norm, padding=padding)
        self.se = _se(spec, cin, norm) or nn.Identity()
        self.conv_pw = ConvNormAct(cin, spec.out_channels, 1, act=spec.act if spec.pw_act else "none", norm=norm)
        self._has_se = spec.se is not None
        self._init_skip(spec, cin, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x)
        if self._has_se:
            y = self.se(y)
        return self._add(self.conv_pw(y), x)


class InvertedResidual(_Residual):
    """MBConv: [1x1 expand], depthwise, [SE], linear 1x1 project, residual when shapes allow."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        mid = spec.mid_channels
        self.conv_pw = ConvNormAct(cin, mid, 1, act=spec.act, norm=norm) if mid != cin else nn.Identity()
        dw_act = "none" if spec.se_before_dw_act else spec.dw_activation
        self.conv_dw = ConvNormAct(mid, mid, spec.kernel, spec.stride, groups=mid, act=dw_act, norm=norm,
                                   padding=padding)
        self.se = _se(spec, mid, norm) or nn.Identity()
        self.act_dw = create_act(spec.dw_activation) if spec.se_before_dw_act else nn.Identity()
        self.conv_pwl = ConvNormAct(mid, spec.out_channels, 1, act="none", norm=norm)
        self._expands, self._has_se, self._post_se_act = mid != cin, spec.se is not None, spec.se_before_dw_act
        self._init_skip(spec, cin, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(self.conv_pw(x) if self._expands else x)
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


BLOCKS: dict[str, type[nn.Module]] = {
    "conv": ConvBlock,
    "ds": DepthwiseSeparable,
    "ir": InvertedResidual,
    "shuffle": ShuffleUnit,
}


def build_block(spec: BlockSpec, cin: int, norm: NormSpec, padding: str = "symmetric",
                drop_path: float = 0.0) -> nn.Module:
    """Instantiate the module for one block spec with input width ``cin``."""
    return BLOCKS[spec.kind](spec, cin, norm, padding, drop_path)
