"""Structured channel pruning over the ArchSpec: the pruned model is a new spec plus sliced weights.

Kept channels are chosen per channel group (see ``channels``): expansion (mid) channels, SE
channels, head widths, and the block outputs that residual additions tie across a stage. The
result rebuilds through ``create_model`` like any zoo model. ShuffleNet units keep the split:
each kept channel must live through the same number of units as the channel it stands for, so
the selection matches channels by that lifetime (see ``_shuffle_select``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from carve.zoo import ArchSpec, CarveNet
from carve.zoo.weights import load_state_dict_strict

from .channels import Label, Trace, rebuild_spec, shuffle_labels, walk

CRITERIA = ("l1", "l2", "bn", "taylor")


class PruneError(ValueError):
    """A pruning request that cannot be met; the message says which argument and why."""


def keep_count(n: int, ratio: float, round_to: int = 8) -> int:
    """Channels kept out of ``n`` when removing ``ratio`` of them, rounded to ``round_to`` when n allows."""
    if ratio <= 0:
        return n
    k = n * (1.0 - ratio)
    if round_to > 1 and n >= 2 * round_to:
        k = max(round_to, round(k / round_to) * round_to)
    return int(min(n, max(1, round(k))))


def check_ratio(ratio: float, name: str = "ratio") -> float:
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise PruneError(f"{name}: the fraction of channels to remove must be in [0, 1), got {ratio!r}")
    return float(ratio)


# -- ShuffleNet runs --------------------------------------------------------------------------------

def _deaths(n_units: int, half: int) -> dict[tuple[int, str, int], int]:
    """Unit at which each channel of a shuffle run is consumed (n_units: survives the run)."""
    stream = shuffle_labels([(0, "A", j) for j in range(half)] + [(0, "B", j) for j in range(half)])
    death: dict = {}
    for k in range(1, n_units):
        for lab in stream[half:]:
            death[lab] = k
        stream = shuffle_labels(stream[:half] + [(k, "B", j) for j in range(half)])
    for lab in stream:
        death[lab] = n_units
    return death


def _shuffle_select(n_units: int, half: int, new_half: int,
                    score: Callable[[int, str, int], float]) -> dict[tuple[int, str], list[int]] | None:
    """Per (unit, branch): original channel indices in the order the pruned unit must emit them."""
    d_old, d_new = _deaths(n_units, half), _deaths(n_units, new_half)
    out: dict[tuple[int, str], list[int]] = {}
    for k in range(n_units):
        for br in (("A", "B") if k == 0 else ("B",)):
            pool: dict[int, list[int]] = {}
            for j in range(half):
                pool.setdefault(d_old[(k, br, j)], []).append(j)
            for js in pool.values():
                js.sort(key=lambda j: -score(k, br, j))
            chosen = []
            for j in range(new_half):
                cands = pool.get(d_new[(k, br, j)])
                if not cands:
                    return None
                chosen.append(cands.pop(0))
            out[(k, br)] = chosen
    return out


# -- counts and selection ------------------------------------------------------------------------------

def _run_groups(spec: ArchSpec, trace: Trace) -> dict[str, tuple[int, int, int]]:
    """Stream group -> (run start block, units, position in run) for every ShuffleNet run."""
    names = [f"blocks.{si}.{bi}" for si, s in enumerate(spec.stages) for bi in range(len(s.blocks))]
    out = {}
    for start, n in trace.shuffle_runs:
        for k in range(n):
            out[f"{names[start + k]}.B"] = (start, n, k)
            if k == 0:
                out[f"{names[start]}.A"] = (start, n, k)
    return out


def plan_counts(spec: ArchSpec, trace: Trace, ratio: float, round_to: int = 8,
                ratios: dict[str, float] | None = None) -> dict[str, int]:
    """Kept channels per group; ``ratios`` overrides the ratio for groups whose name starts with a key."""
    blocks = spec.blocks
    counts = {}
    for gid, n in trace.groups.items():
        r = ratio
        for prefix, value in (ratios or {}).items():
            if gid.startswith(prefix):
                r = value
        counts[gid] = keep_count(n, r, round_to)
    # a ShuffleNet run keeps one half-width for every group in it (split, branches, mid)
    names = [f"blocks.{si}.{bi}" for si, s in enumerate(spec.stages) for bi in range(len(s.blocks))]
    for start, n in trace.shuffle_runs:
        half = blocks[start].out_channels // 2
        new = keep_count(half, ratio, max(1, round_to // 2))
        # not every half-width can host the run's channel lifetimes: take the closest that can
        for cand in sorted(range(1, half + 1), key=lambda c: (abs(c - new), -c)):
            if _shuffle_select(n, half, cand, lambda *a: 0.0) is not None:
                new = cand
                break
        for k in range(n):
            for g in ("A", "B", "M"):
                if f"{names[start + k]}.{g}" in counts:
                    counts[f"{names[start + k]}.{g}"] = new
    # an IR block whose expand conv would end up as wide as its input would lose that conv
    for _ in range(len(trace.expand_inputs) + 1):
        sel = _select(spec, trace, counts, None)
        bad = [gid for gid, inp in trace.expand_inputs.items()
               if counts[gid] == sum(1 for lab in inp if lab in sel["__kept__"])]
        if not bad:
            break
        for gid in bad:
            counts[gid] += 1 if counts[gid] < trace.groups[gid] else -1
    return counts


def _select(spec: ArchSpec, trace: Trace, counts: dict[str, int],
            scores: dict[Label, float] | None) -> dict[str, Any]:
    """Labels kept per group, in the order the pruned layer emits them (plus '__kept__', a set)."""
    score = (lambda lab: scores.get(lab, 0.0)) if scores else (lambda lab: 0.0)
    run_groups = _run_groups(spec, trace)
    sel: dict[str, Any] = {}
    done_runs: set[int] = set()
    for gid, n in trace.groups.items():
        if gid in run_groups:
            start, units, _ = run_groups[gid]
            if start in done_runs:
                continue
            done_runs.add(start)
            names = [g for g, v in run_groups.items() if v[0] == start]
            by_pos = {(v[2], g.rsplit(".", 1)[1]): g for g, v in run_groups.items() if v[0] == start}
            half = trace.groups[names[0]]
            chosen = _shuffle_select(units, half, counts[names[0]],
                                     lambda k, br, j: score((by_pos[(k, br)], j)))
            if chosen is None:
                raise PruneError(f"cannot prune the ShuffleNet run at block {start} to half-width {counts[names[0]]}")
            for (k, br), js in chosen.items():
                sel[by_pos[(k, br)]] = [(by_pos[(k, br)], j) for j in js]
            continue
        k = counts[gid]
        best = sorted(range(n), key=lambda j: -score((gid, j)))[:k]
        sel[gid] = [(gid, j) for j in sorted(best)]
    sel["__kept__"] = {lab for gid, labs in sel.items() if gid != "__kept__" for lab in labs}
    return sel


def pruned_trace(spec: ArchSpec, counts: dict[str, int], scores: dict[Label, float] | None = None) -> Trace:
    """Walk ``spec`` keeping ``counts`` channels per group (the best by ``scores``)."""
    trace = walk(spec)
    sel = _select(spec, trace, counts, scores)
    return walk(spec, lambda gid, n: sel[gid])


def pruned_spec(spec: ArchSpec, ratio: float, round_to: int = 8, ratios: dict[str, float] | None = None) -> ArchSpec:
    """The spec ``prune`` would produce at ``ratio`` (channel counts only, no weights)."""
    check_ratio(ratio)
    trace = walk(spec)
    t = pruned_trace(spec, plan_counts(spec, trace, ratio, round_to, ratios))
    return rebuild_spec(spec, t, name=_pruned_name(spec, ratio))


def _pruned_name(spec: ArchSpec, ratio: float) -> str:
    return spec.name if ratio == 0 else f"{spec.name}_p{round(ratio * 100):02d}"


# -- importance --------------------------------------------------------------------------------------

def channel_scores(model: nn.Module, trace: Trace, criterion: str = "l2") -> dict[Label, float]:
    """Importance of every channel label, summed over the layers that write it (each layer normalised).

    ``l1``/``l2``: norm of the output filters; ``bn``: |gamma| of the BatchNorms (filter norm where a
    group has no BN); ``taylor``: |sum(weight * grad)| per output channel, which needs gradients
    already accumulated on the parameters (see ``accumulate_gradients``).
    """
    if criterion not in CRITERIA:
        raise PruneError(f"importance: expected one of {list(CRITERIA)}, got {criterion!r}")
    modules = dict(model.named_modules())
    scores: dict[Label, float] = {}
    has_bn = {lab for layer in trace.layers.values() if layer.kind == "bn" for lab in layer.out}
    for layer in trace.layers.values():
        mod = modules.get(layer.name)
        if mod is None or not hasattr(mod, "weight"):
            continue
        w = mod.weight.detach()
        if criterion == "bn":
            if layer.kind != "bn" and not all(lab not in has_bn for lab in layer.out):
                continue
            s = w.abs() if layer.kind == "bn" else w.flatten(1).norm(dim=1)
        elif criterion == "taylor":
            if mod.weight.grad is None:
                raise PruneError("importance='taylor' needs gradients: pass data= so they can be computed")
            s = (w * mod.weight.grad).flatten(1).sum(1) if w.dim() > 1 else w * mod.weight.grad
            if getattr(mod, "bias", None) is not None and mod.bias.grad is not None:
                s = s + mod.bias.detach() * mod.bias.grad
            s = s.abs()
        else:
            if layer.kind == "bn":
                continue
            s = w.flatten(1).norm(p=1 if criterion == "l1" else 2, dim=1)
        s = s / (s.mean() + 1e-12)
        for lab, v in zip(layer.out, s.tolist()):
            scores[lab] = scores.get(lab, 0.0) + v
    return scores


def accumulate_gradients(model: nn.Module, data: Iterable, batches: int = 4) -> None:
    """Backpropagate cross-entropy on up to ``batches`` (images, labels) batches into ``.grad``."""
    model.zero_grad()
    was = model.training
    model.eval()
    loss_fn = nn.CrossEntropyLoss()
    n = 0
    for images, labels in data:
        loss_fn(model(images), labels).backward()
        n += 1
        if n >= batches:
            break
    model.train(was)
    if n == 0:
        raise PruneError("data: the calibration data yielded no batches")


# -- applying -----------------------------------------------------------------------------------------

def _positions(old: list[Label], new: list[Label]) -> torch.Tensor:
    where = {lab: i for i, lab in enumerate(old)}
    return torch.tensor([where[lab] for lab in new], dtype=torch.long)


@torch.no_grad()
def slice_state(state: dict[str, torch.Tensor], old: Trace, new: Trace) -> dict[str, torch.Tensor]:
    """Weights of the pruned network: every traced tensor indexed by the kept labels."""
    out = dict(state)
    for name, lo in old.layers.items():
        ln = new.layers[name]
        oi = _positions(lo.out, ln.out)
        ii = _positions(lo.inp, ln.inp) if lo.inp is not None and lo.kind in ("conv", "linear") else None
        keys = ("weight", "bias", "running_mean", "running_var") if lo.kind == "bn" else ("weight", "bias")
        for key in keys:
            full = f"{name}.{key}"
            if full not in state:
                continue
            t = state[full].index_select(0, oi)
            if key == "weight" and ii is not None:
                t = t.index_select(1, ii)
            out[full] = t.contiguous()
    return out


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
    trace = walk(spec)
    scores = channel_scores(model, trace, importance)
    counts = plan_counts(spec, trace, ratio, round_to, ratios)
    new_trace = pruned_trace(spec, counts, scores)
    new_spec = rebuild_spec(spec, new_trace, name=_pruned_name(spec, ratio))
    pruned = CarveNet(new_spec)
    load_state_dict_strict(pruned, slice_state(state, trace, new_trace), f"pruned {spec.name}")
    pruned.train(model.training)
    pruned.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}))
    if importance == "taylor":
        model.zero_grad(set_to_none=True)
    return pruned, new_spec


@torch.no_grad()
def conv_macs(model: nn.Module, input_size: int = 224, in_channels: int | None = None) -> int:
    """Convolution and linear multiply-adds of one image (hooks; cheaper than ``profile`` in a search)."""
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
        model.eval()(torch.zeros(1, cin, input_size, input_size))
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
