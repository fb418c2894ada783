"""Small layers the blocks are made of: activations, conv-BN-act, SE, drop path."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .spec import NormSpec


def create_act(name: str) -> nn.Module:
    """Activation module by spec name."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hardswish":
        return nn.Hardswish(inplace=True)
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "hardsigmoid":
        return nn.Hardsigmoid(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}")


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric where needed), computed per input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        pads = []
        for size, k, s in ((iw, self.kernel_size[1], self.stride[1]), (ih, self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def create_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                bias: bool = False, padding: str = "symmetric") -> nn.Conv2d:
    """A conv padded by ``padding``: ``symmetric`` (kernel // 2), ``same`` (TensorFlow) or ``valid`` (none)."""
    if padding == "same" and (stride > 1 or kernel % 2 == 0):  # else SAME is symmetric: no per-call pad
        return Conv2dSame(cin, cout, kernel, stride, 0, groups=groups, bias=bias)
    pad = 0 if padding == "valid" else kernel // 2
    return nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=bias)


def create_norm(channels: int, norm: NormSpec) -> nn.Module:
    """BatchNorm with the spec's settings, or nothing when the spec has no normalisation."""
    if norm.kind == "none":
        return nn.Identity()
    return nn.BatchNorm2d(channels, eps=norm.eps, momentum=norm.momentum)


def max_pool(pooling: str) -> nn.MaxPool2d:
    """The 3x3/2 max pool: padded by one (``pad``) or unpadded with the size rounded up (``ceil``)."""
    if pooling == "ceil":
        return nn.MaxPool2d(3, 2, 0, ceil_mode=True)
    return nn.MaxPool2d(3, 2, 1)


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> activation; without normalisation the conv has a bias."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str = "relu", norm: NormSpec = NormSpec(), padding: str = "symmetric"):
        super().__init__()
        self.conv = create_conv(cin, cout, kernel, stride, groups, bias=norm.kind == "none", padding=padding)
        self.bn = create_norm(cout, norm)
        self.act = create_act(act)
        self._acts = act != "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.act(x) if self._acts else x


class PooledConvNormAct(ConvNormAct):
    """1x1 conv-BN-act applied to a pooled feature vector (N x C in, N x C' out), MobileNetV4's
    head layer; as a conv, BN folds into it like anywhere else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[:, :, None, None]).flatten(1)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, 1x1 reduce (+BN), act, 1x1 expand, gate, rescale."""

    def __init__(self, channels: int, rd_channels: int, act: str = "relu", gate: str = "sigmoid",
                 norm: NormSpec | None = None):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.bn = nn.BatchNorm2d(rd_channels, eps=norm.eps, momentum=norm.momentum) if norm else nn.Identity()
        self.act = create_act(act)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)
        self.gate = create_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.bn(self.fc1(s))))
        return x * self.gate(s)


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample with probability ``p`` in training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
