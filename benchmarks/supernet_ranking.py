"""The ranking and inheritance parts of ``supernet_search.py``: sub-networks of the shipped supernet with
its weights against the same architectures trained alone (see that script's docstring)."""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from carve.search.supernet_accuracy import SupernetAccuracy
from carve.train import TrainConfig, fit
from carve.zoo import create_model, profile

sys.path.insert(0, str(Path(__file__).parent))
from pretrain_tiny_imagenet import recipe  # noqa: E402  (a sibling script)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a of two paired lists (ties count as neither agreeing nor disagreeing)."""
    n, s = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            d = (a[i] - a[j]) * (b[i] - b[j])
            s += (d > 0) - (d < 0)
    return 2 * s / (n * (n - 1)) if n > 1 else float("nan")


def held_out_scorer(supernet: torch.nn.Module, data: str) -> SupernetAccuracy:
    """Top-1 on all held-out images, BatchNorm re-estimated on 50 batches: how ranking and inheritance score."""
    return SupernetAccuracy(supernet, data, 64, batch_size=128, calibration_batches=50, val_per_class=0)


def spread_subnets(supernet: Any, count: int, seed: int, draws: int = 400) -> dict[str, tuple[float, Any]]:
    """``count`` sub-networks (name: MACs in millions at 224 px, spec) spread evenly in log-MACs: the largest, the smallest and, between them, the
    nearest of ``draws`` seeded draws to each target (each draw leans every choice towards one end of
    its options by a random amount, so the draws cover the whole range, not only its middle)."""
    space, rng = supernet.space, random.Random(seed)

    def macs(spec: Any) -> float:
        return profile(create_model(supernet.fit_spec(spec)), 224).macs / 1e6

    def leaning_draw() -> Any:
        q, params = rng.random(), {}
        for name, options in space.choices():
            ordered = sorted(options)
            i = round(q * (len(ordered) - 1) + rng.gauss(0.0, 0.7))
            params[name] = ordered[min(max(i, 0), len(ordered) - 1)]
        return space.spec_of(params)

    smallest, largest = supernet.smallest(), supernet.largest()
    low, high = macs(smallest), macs(largest)
    pool = [(macs(spec), spec) for spec in (leaning_draw() for _ in range(draws))]
    picks = {"smallest": (low, smallest)}
    for k in range(1, count - 1):
        target = math.log(low) + k * (math.log(high) - math.log(low)) / (count - 1)
        i = min(range(len(pool)), key=lambda j: abs(math.log(pool[j][0]) - target))
        picks[f"subnet_{k:02d}"] = pool.pop(i)
    picks["largest"] = (high, largest)
    return picks


def shipped_recipe(args: argparse.Namespace, epochs: int, per_class: int) -> dict:
    """The shipped weights' training recipe (TrainConfig fields) cut to ``epochs`` on ``per_class`` images
    per class (0: all)."""
    return recipe(argparse.Namespace(data=args.data, epochs=epochs, img_size=64, lr=0.4, eval_every=epochs,
                                     seed=args.seed, train_per_class=per_class, val_per_class=0))


def short_recipe(args: argparse.Namespace, seed: int) -> dict:
    """The ranking's stand-alone recipe (TrainConfig fields) with ``seed``."""
    shipped = shipped_recipe(argparse.Namespace(**{**vars(args), "seed": seed}), args.alone_epochs, args.alone_per_class)
    return dict(shipped, warmup_epochs=0.3, channels_last=True)


def train_alone(args: argparse.Namespace, spec: Any, folder: Path, seed: int) -> float:
    """Held-out top-1 of ``spec`` trained from random initialisation with the short recipe, resuming ``folder``."""
    tc = TrainConfig(model=spec.name, out_dir=str(folder), **{
        **short_recipe(args, seed), "workers": args.workers, "resume": (folder / "last.pt").is_file()})
    return round(float(fit(tc, model=create_model(spec)).final_top1), 2)


def ranking(args: argparse.Namespace, supernet: torch.nn.Module, out: Path, score: SupernetAccuracy) -> dict:
    """Inherited against trained-alone top-1 of sub-networks spread over MACs."""
    out_rows = []
    for name, (macs, spec) in spread_subnets(supernet, args.rank_count, args.seed).items():
        spec = supernet.fit_spec(spec).replace(name=f"rank_{name}")
        inherited = round(float(score(spec)), 2)
        t0 = time.perf_counter()
        alone = train_alone(args, spec, out / "alone" / name, args.seed)
        macs = round(macs, 1)
        out_rows.append(dict(subnet=name, macs_m=macs, inherited=inherited, alone=alone,
                             train_s=round(time.perf_counter() - t0, 1), spec=spec.to_dict()))
        print(f"{name:12s} {macs:7.1f} M MACs  inherited {inherited:6.2f}  alone {alone:6.2f}  "
              f"({out_rows[-1]['train_s']:.0f} s)", flush=True)
    tau = kendall_tau([r["inherited"] for r in out_rows], [r["alone"] for r in out_rows])
    by_macs = [r["macs_m"] for r in out_rows]
    return dict(rows=out_rows, kendall_tau=round(tau, 3),
                tau_macs=dict(inherited=round(kendall_tau(by_macs, [r["inherited"] for r in out_rows]), 3),
                              alone=round(kendall_tau(by_macs, [r["alone"] for r in out_rows]), 3)),
                alone_recipe=dict(short_recipe(args, args.seed), init="random"))


def inheritance(args: argparse.Namespace, supernet: torch.nn.Module, out: Path, score: SupernetAccuracy) -> dict:
    """The largest and the smallest sub-network: supernet weights against trained alone for its epochs."""
    shipped = dict(shipped_recipe(args, args.inherit_epochs, args.inherit_per_class), warmup_epochs=0.5)
    rows = []
    for name, spec in dict(smallest=supernet.smallest(), largest=supernet.largest()).items():
        spec = spec.replace(name=f"alone_{name}")
        inherited = round(float(score(spec)), 2)
        cfg = TrainConfig(model=spec.name, out_dir=str(out / "inherit" / name), **{
            **shipped, "resume": (out / "inherit" / name / "last.pt").is_file()})
        res = fit(cfg, model=create_model(spec))
        alone = round(float(res.final_top1), 2)
        rows.append(dict(subnet=name, inherited=inherited, alone=alone, gap=round(inherited - alone, 2)))
        print(f"{name:9s} inherited {inherited:6.2f}  alone ({args.inherit_epochs} epochs) {alone:6.2f}", flush=True)
    return dict(rows=rows, epochs=args.inherit_epochs, within_2_points=all(abs(r["gap"]) <= 2 for r in rows))


def seed_noise(args: argparse.Namespace, ranking_part: dict, out: Path) -> dict:
    """The ranking's trained-alone top-1 of ``--noise-subnets`` again with ``--noise-seeds``: how far the
    seed alone moves a stand-alone figure, against the spread the ranking has to order."""
    from carve.zoo import parse_spec

    recorded = ranking_part["alone_recipe"]
    if recorded["epochs"] != args.alone_epochs or recorded["train_per_class"] != args.alone_per_class:
        raise SystemExit(f"--alone-epochs/--alone-per-class: the recorded ranking trained {recorded['epochs']} epochs "
                         f"on {recorded['train_per_class']} images per class; pass those")
    by_name = {r["subnet"]: r for r in ranking_part["rows"]}
    unknown = [n for n in args.noise_subnets if n not in by_name]
    if unknown:
        raise SystemExit(f"--noise-subnets: {unknown} not in the ranking (expected some of {list(by_name)})")
    rows = []
    for name in args.noise_subnets:
        spec = parse_spec(by_name[name]["spec"])
        for seed in args.noise_seeds:
            alone = train_alone(args, spec, out / f"alone_seed{seed}" / name, seed)
            rows.append(dict(subnet=name, seed=seed, alone=alone, recorded_seed=recorded["seed"],
                             recorded=by_name[name]["alone"], diff=round(alone - by_name[name]["alone"], 2)))
            print(f"{name:12s} seed {seed}: alone {alone:6.2f}  (seed {rows[-1]['recorded_seed']}: "
                  f"{rows[-1]['recorded']:6.2f})", flush=True)
    alone = [r["alone"] for r in ranking_part["rows"]]
    return dict(rows=rows, ranking_spread=round(max(alone) - min(alone), 2),
                largest_seed_diff=max(abs(r["diff"]) for r in rows), **seed_taus(ranking_part, rows))


def seed_taus(ranking_part: dict, rows: list[dict]) -> dict:
    """Over the sub-networks trained again (three or more): Kendall tau of each seed's stand-alone
    order against the recorded seed's (the reference's own ceiling), and of the inherited order
    against each seed's and against the seeds' mean."""
    names = list(dict.fromkeys(r["subnet"] for r in rows))
    if len(names) < 3:
        return {}
    by_name = {r["subnet"]: r for r in ranking_part["rows"]}
    recorded, inherited = [by_name[n]["alone"] for n in names], [by_name[n]["inherited"] for n in names]
    alone = {(r["seed"], r["subnet"]): r["alone"] for r in rows}
    others = {seed: [alone[seed, n] for n in names] for seed in dict.fromkeys(r["seed"] for r in rows)}
    per_seed = {ranking_part["alone_recipe"]["seed"]: recorded, **others}
    mean = [sum(column) / len(per_seed) for column in zip(*per_seed.values())]
    return dict(subnets=names,
                tau_between_seeds={str(s): round(kendall_tau(recorded, v), 3) for s, v in others.items()},
                tau_inherited_per_seed={str(s): round(kendall_tau(inherited, v), 3) for s, v in per_seed.items()},
                tau_inherited_seed_mean=round(kendall_tau(inherited, mean), 3),
                seed_mean=[round(m, 2) for m in mean])
