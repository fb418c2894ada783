"""Sub-networks of a spec: fewer channels per channel group, chosen by importance, with their weights.

Kept channels are chosen per channel group (see ``channels``): expansion (mid) channels, SE
channels, head widths, and the block outputs that residual additions tie across a stage. The
result rebuilds through ``create_model`` like any zoo model. ShuffleNet units keep the split:
each kept channel must live through the same number of units as the channel it stands for, so
the selection matches channels by that lifetime (see ``_shuffle_select``). Structured pruning
(``carve.compress``) and search over sub-networks with inherited weights both build on this.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .channels import Label, Trace, rebuild_spec, shuffle_labels, walk
from .model import CarveNet
from .spec import ArchSpec
from .weights import load_state_dict_strict

CRITERIA = ("l1", "l2", "bn", "taylor")


class SubnetError(ValueError):
    """A sub-network that cannot be cut as asked; the message says which part and why."""


def keep_count(n: int, ratio: float, round_to: int = 8) -> int:
    """Channels kept out of ``n`` when removing ``ratio`` of them, rounded to ``round_to`` when n allows."""
    if ratio <= 0:
        return n
    k = n * (1.0 - ratio)
    if round_to > 1 and n >= 2 * round_to:
        k = max(round_to, round(k / round_to) * round_to)
    return int(min(n, max(1, round(k))))


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
                raise SubnetError(f"cannot narrow the ShuffleNet run at block {start} to half-width {counts[names[0]]}")
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
    _check_ratio(ratio)
    trace = walk(spec)
    t = pruned_trace(spec, plan_counts(spec, trace, ratio, round_to, ratios))
    return rebuild_spec(spec, t, name=_pruned_name(spec, ratio))


def _pruned_name(spec: ArchSpec, ratio: float) -> str:
    return spec.name if ratio == 0 else f"{spec.name}_p{round(ratio * 100):02d}"


def channel_scores(model: nn.Module, trace: Trace, criterion: str = "l2") -> dict[Label, float]:
    """Importance of every channel label, summed over the layers that write it (each layer normalised).

    ``l1``/``l2``: norm of the output filters; ``bn``: |gamma| of the BatchNorms (filter norm where a
    group has no BN); ``taylor``: |sum(weight * grad)| per output channel, which needs gradients
    already accumulated on the parameters (see ``accumulate_gradients``).
    """
    if criterion not in CRITERIA:
        raise SubnetError(f"importance: expected one of {list(CRITERIA)}, got {criterion!r}")
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
                raise SubnetError("importance='taylor' needs gradients: pass data= so they can be computed")
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


def _check_ratio(ratio: float, name: str = "ratio") -> float:
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise SubnetError(f"{name}: the fraction of channels to remove must be in [0, 1), got {ratio!r}")
    return float(ratio)


def counts_for(spec: ArchSpec, target: ArchSpec) -> dict[str, int]:
    """Kept channels per group of ``spec`` that give ``target``: a spec with ``spec``'s blocks and
    fewer (or as many) channels. Anything else is a ``SubnetError`` naming where they differ."""
    if [(b.kind, b.kernel, b.stride) for b in spec.blocks] != [(b.kind, b.kernel, b.stride) for b in target.blocks]:
        raise SubnetError(f"{target.name}: not a channel sub-network of {spec.name} (blocks, kernels or strides "
                          "differ)")
    big, small = walk(spec).groups, walk(target).groups
    if set(big) != set(small):
        diff = sorted(set(big) ^ set(small))[:3]
        raise SubnetError(f"{target.name}: channel groups differ from {spec.name}'s: {diff}")
    wider = [g for g in big if small[g] > big[g]]
    if wider:
        raise SubnetError(f"{target.name}: group {wider[0]} has {small[wider[0]]} channels, {spec.name} only "
                          f"{big[wider[0]]}")
    return dict(small)


def subnetwork(model: nn.Module, counts: dict[str, int], spec: ArchSpec | None = None, importance: str = "l2",
               name: str | None = None) -> tuple[CarveNet, ArchSpec]:
    """The sub-network of ``model`` keeping ``counts`` channels per group, the most important ones by
    ``importance`` (l1, l2, bn; taylor needs gradients already on the parameters), with their weights."""
    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise SubnetError("spec: a model without .spec needs spec=")
    state = model.state_dict()
    trace = walk(spec)
    new_trace = pruned_trace(spec, counts, channel_scores(model, trace, importance))
    new_spec = rebuild_spec(spec, new_trace, name=name or spec.name)
    sub = CarveNet(new_spec)
    load_state_dict_strict(sub, slice_state(state, trace, new_trace), f"sub-network of {spec.name}")
    sub.train(model.training)
    sub.pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}))
    return sub, new_spec


def inherit(model: nn.Module, target: ArchSpec, importance: str = "l2") -> CarveNet:
    """``target`` built with weights inherited from ``model`` (whose channel sub-network it is)."""
    spec = model.spec
    sub, _ = subnetwork(model, counts_for(spec, target), spec, importance, name=target.name)
    return sub
