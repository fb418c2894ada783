"""Zero-cost accuracy proxies: score an untrained network from one batch, no training.

synflow (Tanaka et al. 2020), NASWOT (Mellor et al. 2021), jacob_cov (Mellor et al. 2020),
grad_norm and snip (Abdelfattah et al. 2021), plus params and MACs as baselines beside them.
Higher is better for every score.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from carve.zoo import ArchSpec, create_model, profile

_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU)
_WEIGHTED = (nn.Conv2d, nn.Linear)


def _weighted(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _WEIGHTED)]


def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Synaptic flow: sum |theta * dR/dtheta| with |theta| and an all-ones input (data-free)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    x = torch.ones((1,) + tuple(images.shape[1:]), dtype=torch.float64)
    net(x).sum().backward()
    total = 0.0
    with torch.no_grad():
        for m in _weighted(net):
            if m.weight.grad is not None:
                total += float((m.weight * m.weight.grad).abs().sum())
    return math.log(total) if total > 0 else float("-inf")


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over layers of the L2 norm of the loss gradient."""
    net = copy.deepcopy(model).train()
    net.zero_grad()
    F.cross_entropy(net(images), labels).backward()
    with torch.no_grad():
        return float(sum(m.weight.grad.norm() for m in _weighted(net) if m.weight.grad is not None))


def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Connection sensitivity: sum |w * dL/dw|."""
    net = copy.deepcopy(model).train()
    net.zero_grad()
    F.cross_entropy(net(images), labels).backward()
    with torch.no_grad():
        return float(sum((m.weight * m.weight.grad).abs().sum() for m in _weighted(net) if m.weight.grad is not None))


def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """log|K| of the Hamming-similarity kernel of the samples' activation patterns."""
    net = copy.deepcopy(model).train()
    n = images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        codes = (out.detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.t() + (1 - codes) @ (1 - codes).t())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, _ACTS)]
    try:
        with torch.no_grad():
            net(images)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


def jacob_cov(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Score of the correlation of input Jacobians across the batch (less correlated is better)."""
    net = copy.deepcopy(model).train()
    x = images.clone().requires_grad_(True)
    net(x).sum().backward()
    jac = x.grad.reshape(x.shape[0], -1).double()
    corr = torch.corrcoef(jac)
    corr = torch.nan_to_num(corr, nan=0.0)
    eig = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-torch.sum(torch.log(eig.clamp_min(0) + k) + 1.0 / (eig.clamp_min(0) + k)))


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "synflow": synflow, "naswot": naswot, "jacob_cov": jacob_cov, "grad_norm": grad_norm, "snip": snip,
}
BASELINES = ("params", "macs")


def compute_proxies(model_or_spec: nn.Module | ArchSpec, images: torch.Tensor, labels: torch.Tensor,
                    names: Iterable[str] = tuple(PROXIES) + BASELINES, seed: int = 0) -> dict[str, float]:
    """Scores of ``names`` (proxies and baselines) for one network on one batch."""
    names = list(names)
    unknown = [n for n in names if n not in PROXIES and n not in BASELINES]
    if unknown:
        raise ValueError(f"proxy: unknown {unknown}; expected some of {list(PROXIES) + list(BASELINES)}")
    if isinstance(model_or_spec, ArchSpec):
        torch.manual_seed(seed)
        model = create_model(model_or_spec)
    else:
        model = model_or_spec
    out: dict[str, float] = {}
    if "params" in names or "macs" in names:
        prof = profile(model, int(images.shape[-1]), int(images.shape[1]))
        if "params" in names:
            out["params"] = float(prof.params)
        if "macs" in names:
            out["macs"] = float(prof.macs)
    for name in names:
        if name in PROXIES:
            out[name] = PROXIES[name](model, images, labels)
    return out
