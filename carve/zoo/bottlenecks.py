"""The inverted bottlenecks after MobileNetV2: MobileNetV4's Universal Inverted Bottleneck,
fused-MBConv, and SqueezeNet's Fire module (a bottleneck before them all)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvNormAct, max_pool
from .residual import Residual, se_module
from .spec import BlockSpec, NormSpec


class UniversalInvertedBottleneck(Residual):
    """UIB (MobileNetV4, Qin et al. 2024, Fig. 4): [depthwise start], 1x1 expand, [depthwise
    middle], [SE], 1x1 project, [depthwise end], residual when shapes allow.

    With only the middle depthwise conv it is MobileNetV2's inverted bottleneck (the expand conv is
    kept even at expansion 1), with start and middle it is ExtraDW, with only the start one it is
    ConvNeXt-like, with none it is the FFN.
    """

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        mid, cout, s = spec.mid_channels, spec.out_channels, spec.stride
        k0, k1, k2 = spec.start_kernel, spec.kernel, spec.end_kernel
        # the stride goes to the middle depthwise conv, else the start one, else the end one
        s0 = s if k0 and not k1 else 1
        s2 = s if k2 and not (k0 or k1) else 1
        self.dw_start = (ConvNormAct(cin, cin, k0, s0, groups=cin, act="none", norm=norm, padding=padding)
                         if k0 else nn.Identity())
        self.pw_exp = ConvNormAct(cin, mid, 1, act=spec.act, norm=norm)
        self.dw_mid = (ConvNormAct(mid, mid, k1, s, groups=mid, act=spec.dw_activation, norm=norm, padding=padding)
                       if k1 else nn.Identity())
        self.se = se_module(spec, mid, norm) or nn.Identity()
        self.pw_proj = ConvNormAct(mid, cout, 1, act="none", norm=norm)
        self.dw_end = (ConvNormAct(cout, cout, k2, s2, groups=cout, act="none", norm=norm, padding=padding)
                       if k2 else nn.Identity())
        self._start, self._mid, self._end, self._has_se = bool(k0), bool(k1), bool(k2), spec.se is not None
        self._init_skip(spec, cin, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw_start(x) if self._start else x
        y = self.pw_exp(y)
        if self._mid:
            y = self.dw_mid(y)
        if self._has_se:
            y = self.se(y)
        y = self.pw_proj(y)
        if self._end:
            y = self.dw_end(y)
        return self._add(y, x)


class FusedMBConv(Residual):
    """Fused-MBConv (EfficientNet-EdgeTPU / EfficientNetV2 Fig. 2): one full k x k expand conv
    in place of MBConv's 1x1 expand and depthwise pair, [SE], 1x1 linear project, residual."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        mid = spec.mid_channels
        self.conv_exp = ConvNormAct(cin, mid, spec.kernel, spec.stride, act=spec.act, norm=norm, padding=padding)
        self.se = se_module(spec, mid, norm) or nn.Identity()
        self.conv_pwl = ConvNormAct(mid, spec.out_channels, 1, act="none", norm=norm)
        self._has_se = spec.se is not None
        self._init_skip(spec, cin, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_exp(x)
        if self._has_se:
            y = self.se(y)
        return self._add(self.conv_pwl(y), x)


class FireModule(Residual):
    """SqueezeNet's Fire module (Iandola et al. 2016, Fig. 1): 1x1 squeeze, then 1x1 and 3x3
    expand convs side by side, concatenated. Stride 2 max-pools before the squeeze; a residual
    (SqueezeNet's simple bypass) when ``skip`` allows and the widths match."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0,
                 pooling: str = "pad"):
        super().__init__()
        half, act = spec.out_channels // 2, spec.act
        self.pool = max_pool(pooling) if spec.stride == 2 else nn.Identity()
        self.squeeze = ConvNormAct(cin, spec.mid_channels, 1, act=act, norm=norm)
        self.expand1x1 = ConvNormAct(spec.mid_channels, half, 1, act=act, norm=norm)
        self.expand3x3 = ConvNormAct(spec.mid_channels, half, spec.kernel, act=act, norm=norm, padding=padding)
        self._pools = spec.stride == 2
        self._init_skip(spec, cin, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(self.pool(x) if self._pools else x)
        return self._add(torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1), x)
