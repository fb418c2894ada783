"""MobileOne's re-parameterisable block (Vasu et al. 2023, Fig. 3) and the switch to its deployed form.

At training time the block sums a BatchNorm identity branch, a 1x1 conv-BN "scale" branch and
``branches`` k x k conv-BN branches; every branch is linear, so at inference they add up to one
k x k conv with a bias. ``reparameterize`` makes that switch in place (same outputs up to float
rounding); the spec does not change, it describes the trainable form.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .layers import ConvNormAct, DropPath, create_act, create_conv, create_norm
from .residual import se_module
from .spec import BlockSpec, NormSpec, StemSpec


class MobileOneBlock(nn.Module):
    """Branches (identity BN, 1x1 scale, k x k convs) summed, [SE], act; or, deployed, one conv."""

    def __init__(self, spec: BlockSpec, cin: int, norm: NormSpec, padding: str, drop_path: float = 0.0):
        super().__init__()
        cout, k, s, g = spec.out_channels, spec.kernel, spec.stride, spec.groups
        self.kernel, self.stride, self.groups, self.padding = k, s, g, padding
        self.in_channels, self.out_channels = cin, cout
        use_identity = spec.skip != "none" and s == 1 and cin == cout
        self.identity = create_norm(cout, norm) if use_identity else None
        self.conv_kxk = nn.ModuleList(ConvNormAct(cin, cout, k, s, groups=g, act="none", norm=norm, padding=padding)
                                      for _ in range(spec.branches))
        self.conv_scale = (ConvNormAct(cin, cout, 1, s, groups=g, act="none", norm=norm, padding=padding)
                           if k > 1 else None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 and use_identity else nn.Identity()
        self.se = se_module(spec, cout, norm) or nn.Identity()
        self.act = create_act(spec.act)
        self.reparam_conv: nn.Conv2d | None = None

    @classmethod
    def stem(cls, stem: StemSpec, cin: int, norm: NormSpec, padding: str) -> MobileOneBlock:
        """MobileOne's stem: one k x k branch and the 1x1 scale branch, no identity."""
        spec = BlockSpec("mobileone", stem.channels, stem.kernel, stem.stride, act=stem.act, skip="none")
        return cls(spec, cin, norm, padding)

    @property
    def deployed(self) -> bool:
        return self.reparam_conv is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.act(self.se(self.reparam_conv(x)))
        # scale branch first, then the k x k ones: timm's summation order (no "0 +", which
        # trips PT2E's conv + add fusion patterns)
        outs = ([self.conv_scale(x)] if self.conv_scale is not None else []) + [b(x) for b in self.conv_kxk]
        out = outs[0]
        for y in outs[1:]:
            out = out + y
        out = self.drop_path(out)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.act(self.se(out))

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by the one conv (with bias) they sum to; a no-op once deployed."""
        if self.reparam_conv is not None:
            return
        ref = self.conv_kxk[0].conv
        weight = torch.zeros_like(ref.weight)
        bias = torch.zeros(self.out_channels, dtype=weight.dtype, device=weight.device)
        for branch in self.conv_kxk:
            w, b = _fused(branch.conv.weight, branch.conv.bias, branch.bn)
            weight += w
            bias += b
        if self.conv_scale is not None:
            w, b = _fused(self.conv_scale.conv.weight, self.conv_scale.conv.bias, self.conv_scale.bn)
            p = self.kernel // 2
            weight += nn.functional.pad(w, [p, p, p, p])
            bias += b
        if self.identity is not None:
            w, b = _fused(self._identity_kernel(weight), None, self.identity)
            weight += w
            bias += b
        conv = create_conv(self.in_channels, self.out_channels, self.kernel, self.stride, self.groups, bias=True,
                           padding=self.padding).to(weight.device, weight.dtype)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.reparam_conv = conv
        self.identity, self.conv_scale, self.conv_kxk = None, None, nn.ModuleList()
        self.drop_path = nn.Identity()

    def _identity_kernel(self, like: torch.Tensor) -> torch.Tensor:
        """The k x k (grouped) conv kernel computing the identity."""
        kernel = torch.zeros_like(like)
        per_group = self.in_channels // self.groups
        c = self.kernel // 2
        for i in range(self.in_channels):
            kernel[i, i % per_group, c, c] = 1.0
        return kernel


def _fused(weight: torch.Tensor, bias: torch.Tensor | None, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``norm(conv(x))`` for an eval-mode BatchNorm (or no norm)."""
    b = bias if bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
    if not isinstance(norm, nn.BatchNorm2d):
        return weight, b
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return weight * scale.reshape(-1, 1, 1, 1), norm.bias + (b - norm.running_mean) * scale


def reparameterize(model: nn.Module) -> int:
    """Switch every re-parameterisable module of ``model`` (carve's or timm's MobileOne blocks)
    to its deployed form, in place; returns how many were switched."""
    count = 0
    for module in list(model.modules()):
        if module is not model and callable(getattr(module, "reparameterize", None)):
            before = getattr(module, "reparam_conv", True)
            module.reparameterize()
            count += before is None
    return count


def has_branches(model: nn.Module) -> bool:
    """Whether ``model`` holds a re-parameterisable module still in its training form."""
    return any(callable(getattr(m, "reparameterize", None)) and getattr(m, "reparam_conv", 1) is None
               for m in model.modules())


def deployed(model: nn.Module) -> nn.Module:
    """``model`` itself, or a copy with its re-parameterisable modules deployed (the original
    keeps its branches)."""
    if not has_branches(model):
        return model
    out = copy.deepcopy(model)
    reparameterize(out)
    return out
