"""Low-rank factorisation of pointwise convolutions and linear layers by truncated SVD."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from carve.zoo import ArchSpec


class Factorized(nn.Sequential):
    """``W ~ B @ A``: a rank-r layer (no bias) followed by the output layer (with the original bias)."""


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors (A: r x in, B: out x r) of a 2-D weight, singular values split evenly."""
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    root = s[:rank].sqrt()
    return root[:, None] * vh[:rank], u[:, :rank] * root[None, :]


def relative_error(weight: torch.Tensor, rank: int) -> float:
    """||W - B A||_F / ||W||_F for the truncated SVD at ``rank``."""
    a, b = svd_factors(weight, rank)
    return float((weight - b @ a).norm() / weight.norm())


def rank_for_energy(weight: torch.Tensor, energy: float) -> int:
    """Smallest rank keeping ``energy`` of the squared singular values."""
    s = torch.linalg.svdvals(weight) ** 2
    cum = torch.cumsum(s, 0) / s.sum()
    return int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype)).item()) + 1


def _matrix(m: nn.Module) -> torch.Tensor:
    return m.weight.detach().flatten(1)


def _factorize(m: nn.Module, rank: int) -> Factorized:
    a, b = svd_factors(_matrix(m), rank)
    if isinstance(m, nn.Linear):
        first, second = nn.Linear(m.in_features, rank, bias=False), nn.Linear(rank, m.out_features, bias=m.bias is not None)
        first.weight.data.copy_(a)
        second.weight.data.copy_(b)
    else:
        first = nn.Conv2d(m.in_channels, rank, 1, bias=False)
        second = nn.Conv2d(rank, m.out_channels, 1, bias=m.bias is not None)
        first.weight.data.copy_(a[:, :, None, None])
        second.weight.data.copy_(b[:, :, None, None])
    if m.bias is not None:
        second.bias.data.copy_(m.bias.detach())
    return Factorized(first, second)


def _candidates(model: nn.Module, include_classifier: bool) -> list[tuple[nn.Module, str, nn.Module]]:
    out = []
    for parent_name, parent in model.named_modules():
        if isinstance(parent, Factorized):
            continue
        for name, child in parent.named_children():
            full = f"{parent_name}.{name}" if parent_name else name
            if full == "classifier" and not include_classifier:
                continue
            pointwise = (isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1) and child.groups == 1
                         and child.stride == (1, 1))
            if pointwise or isinstance(child, nn.Linear):
                out.append((parent, name, child))
    return out


@torch.no_grad()
def lowrank(model: nn.Module, spec: ArchSpec | None = None, energy: float = 0.9, min_saving: float = 0.25,
            include_classifier: bool = False, target_latency: float | None = None,
            latency: Callable[[nn.Module], float] | None = None) -> tuple[nn.Module, ArchSpec]:
    """Replace pointwise convs and linears by two thinner layers where it saves at least ``min_saving``.

    The rank keeps ``energy`` of the squared singular values; a layer is left alone when the two
    factors would not cut its multiply-adds by ``min_saving`` (the usual case for mobile nets'
    narrow projections). With ``target_latency`` (a fraction of the unfactorised latency measured
    by ``latency``), the highest energy meeting it is chosen. The spec is unchanged; the module
    tree is not a zoo tree any more, so keep the original to rebuild through ``create_model``.
    """
    spec = spec or getattr(model, "spec", None)
    if not 0 < energy <= 1:
        raise ValueError(f"energy: the fraction of squared singular values to keep must be in (0, 1], got {energy!r}")
    if not 0 <= min_saving < 1:
        raise ValueError(f"min_saving: must be in [0, 1), got {min_saving!r}")
    if target_latency is not None:
        if latency is None:
            from carve.latency import measure

            latency = lambda m: measure(m, cache=False).median_ms  # noqa: E731
        base = latency(model)
        for e in (0.99, 0.97, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5):
            cand, _ = lowrank(model, spec, e, min_saving, include_classifier)
            if latency(cand) <= target_latency * base:
                return cand, spec
        raise ValueError(f"target_latency: {target_latency} of the original is out of reach by factorisation")
    out = copy.deepcopy(model)
    done: list[dict[str, Any]] = []
    for parent, name, child in _candidates(out, include_classifier):
        w = _matrix(child)
        o, i = w.shape
        r = rank_for_energy(w, energy)
        if r * (o + i) > (1 - min_saving) * o * i:
            continue
        setattr(parent, name, _factorize(child, r))
        done.append(dict(layer=name, rank=r, full=min(o, i)))
    out.carve_steps = list(getattr(model, "carve_steps", [])) + [f"lowrank(energy={energy}, layers={len(done)})"]
    out.lowrank_layers = done
    return out, spec
