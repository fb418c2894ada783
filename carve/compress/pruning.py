"""Structured channel pruning to a target: the pruned model is a new spec plus sliced weights.

A target (a channel ratio, a fraction of the MACs or of the measured latency) becomes kept
channels per group; ``carve.zoo.subnets`` picks the most important ones and slices the weights,
so the result rebuilds through ``create_model`` like any zoo model.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from carve.zoo import ArchSpec, CarveNet
from carve.zoo.channels import check_prunable, walk
from carve.zoo.subnets import (CRITERIA, SubnetError, _pruned_name, channel_scores, keep_count, plan_counts,
                               pruned_spec, slice_state, subnetwork)


class PruneError(SubnetError):
    """A pruning request that cannot be met; the message says which argument and why."""


def check_ratio(ratio: float, name: str = "ratio") -> float:
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise PruneError(f"{name}: the fraction of channels to remove must be in [0, 1), got {ratio!r}")
    return float(ratio)


def accumulate_gradients(model: nn.Module, data: Iterable, batches: int = 4) -> None:
    """Backpropagate cross-entropy on up to ``batches`` (images, labels, ...) batches into ``.grad``
    (what follows the labels, e.g. the keys a shard loader yields, is ignored)."""
    model.zero_grad()
    was = model.training
    model.eval()
    loss_fn = nn.CrossEntropyLoss()
    n = 0
    for batch in data:
        images, labels = batch[0], batch[1]
        loss_fn(model(images), labels).backward()
        n += 1
        if n >= batches:
            break
    model.train(was)
    if n == 0:
        raise PruneError("data: the calibration data yielded no batches")


# -- applying -------------------------------------------------------------------------------------------

def prune(model: nn.Module, spec: ArchSpec | None = None, ratio: float | None = None, *,
          target_macs: float | None = None, target_latency: float | None = None,
          importance: str = "l2", round_to: int = 8, ratios: dict[str, float] | None = None,
          data: Iterable | None = None, input_size: int = 224,
          latency_kwargs: dict[str, Any] | None = None) -> tuple[nn.Module, ArchSpec]:
    """Remove whole channels; return a CarveNet built from the pruned spec with the kept weights.

    Give one target: ``ratio`` (fraction of channels removed per group), ``target_macs`` (fraction
    of the original MACs to keep) or ``target_latency`` (fraction of the original latency measured
    by ``carve.latency.measure``). ``importance``: l1, l2, bn or taylor (needs ``data``).
    """
    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise PruneError("spec: a model without .spec needs spec= to be pruned")
    try:
        check_prunable(spec)
    except ValueError as exc:
        raise PruneError(str(exc)) from None
    state = model.state_dict()
    if not any(k.endswith(".bn.running_var") for k in state):
        raise PruneError("model: no BatchNorm found; prune before fold (folded models cannot be rebuilt)")
    given = [v is not None for v in (ratio, target_macs, target_latency)]
    if sum(given) != 1:
        raise PruneError("target: give exactly one of ratio, target_macs, target_latency")
    if importance not in CRITERIA:
        raise PruneError(f"importance: expected one of {list(CRITERIA)}, got {importance!r}")
    if target_macs is not None:
        ratio = ratio_for_target(spec, target_macs, lambda s: conv_macs(CarveNet(s), input_size),
                                 round_to, ratios, "target_macs")
    elif target_latency is not None:
        from carve.latency import measure

        kw = dict(input_size=input_size, **(latency_kwargs or {}))
        ratio = ratio_for_target(spec, target_latency, lambda s: measure(s, **kw).median_ms, round_to, ratios,
                                 "target_latency")
    check_ratio(ratio)
    if importance == "taylor":
        if data is None:
            raise PruneError("importance='taylor' needs data= (an iterable of (images, labels) batches)")
        accumulate_gradients(model, data)
    counts = plan_counts(spec, walk(spec), ratio, round_to, ratios)
    try:
        pruned, new_spec = subnetwork(model, counts, spec, importance, name=_pruned_name(spec, ratio))
    except SubnetError as exc:
        raise PruneError(str(exc)) from None
    if importance == "taylor":
        model.zero_grad(set_to_none=True)
    return pruned, new_spec


@torch.no_grad()
def conv_macs(model: nn.Module, input_size: int = 224, in_channels: int | None = None,
              example: Any = None) -> int:
    """Convolution and linear multiply-adds of one image (hooks; cheaper than ``profile`` in a search);
    ``example``: the input to count on instead of a zero ``input_size`` square image."""
    total = [0]

    def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        cin = in_channels or getattr(getattr(model, "spec", None), "in_channels", 3)
        was = model.training
        model.eval()(torch.zeros(1, cin, input_size, input_size) if example is None else example)
        model.train(was)
    finally:
        for h in handles:
            h.remove()
    return total[0]


def ratio_for_target(spec: ArchSpec, fraction: float, cost: Callable[[ArchSpec], float], round_to: int = 8,
                     ratios: dict[str, float] | None = None, name: str = "target", steps: int = 8) -> float:
    """Smallest channel ratio whose pruned spec costs at most ``fraction`` of the original (bisection)."""
    if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise PruneError(f"{name}: the fraction of the original to keep must be in (0, 1], got {fraction!r}")
    if fraction == 1:
        return 0.0
    base = cost(spec)
    lo, hi = 0.0, 0.9
    if cost(pruned_spec(spec, hi, round_to, ratios)) > fraction * base:
        raise PruneError(f"{name}: {fraction} of the original is out of reach even at ratio {hi}")
    for _ in range(steps):
        mid = (lo + hi) / 2
        if cost(pruned_spec(spec, mid, round_to, ratios)) <= fraction * base:
            hi = mid
        else:
            lo = mid
    return round(hi, 4)


__all__ = ["PruneError", "accumulate_gradients", "channel_scores", "keep_count", "plan_counts", "prune",
           "pruned_spec", "ratio_for_target", "slice_state", "conv_macs", "check_ratio"]
