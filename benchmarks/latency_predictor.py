"""How well block-table predictions match measured latency, on random architectures.

Samples architectures from a search space (``--space mbconv``) or, by default, by perturbing zoo
specs of five families in the spirit of Once-for-All (per stage depth -1/0/+1, per inverted-residual
block kernel 3/5/7 and expansion 3/4/6), at 224 and at 32 px. Each spec's
missing parts are measured and then the spec itself, alternately, so drift of a shared machine
hits table and ground truth alike. With ``--repeats R`` every whole model is measured in R passes
(a new order each pass) and its ground truth is the median of the passes' medians: one pass's
median moves by a few percent between passes, which is noise of the reference, not of the
predictor. The correction is fitted on ``--fit`` extra specs and the figures are reported on the
others: share within +-10%, MAPE, Kendall tau. Writes JSON and a PNG.

    python benchmarks/latency_predictor.py --space mbconv --count 100 --fit 20 --sizes 224 32 \
        --threads 1 --clock cpu --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from carve.latency import LatencyCache, Protocol, device_fingerprint, measure
from carve.latency.table import LatencyTable, build_table, fit_correction, predict
from carve.zoo import ArchSpec, SESpec, StageSpec, get_entry, make_divisible

BASES = ["mobilenet_v2_100", "mobilenet_v3_large_100", "mobilenet_v3_small_100", "efficientnet_b0", "carve_100"]


def perturb(spec: ArchSpec, rng: random.Random) -> ArchSpec:
    """A random OFA-style neighbour of ``spec``: stage depths, kernels and expansions re-drawn."""
    stages, cin = [], spec.stem.channels
    for stage in spec.stages:
        blocks = list(stage.blocks)
        if all(b.kind == "ir" for b in blocks):
            depth = max(1, len(blocks) + rng.choice((-1, 0, 1)))
            blocks = (blocks + [replace(blocks[-1], stride=1)] * 2)[:depth]
        new = []
        for b in blocks:
            if b.kind == "ir":
                old_mid = b.mid_channels
                mid = make_divisible(cin * rng.choice((3, 4, 6)))
                se = None if b.se is None else SESpec(max(1, make_divisible(mid * b.se.channels / old_mid)),
                                                      b.se.act, b.se.gate, b.se.norm)
                b = replace(b, kernel=rng.choice((3, 5, 7)), mid_channels=mid, se=se)
            new.append(b)
            cin = b.out_channels
        stages.append(StageSpec(tuple(new)))
    return replace(spec, name=f"{spec.name}_r{rng.randrange(10**6)}", stages=tuple(stages))


def sample(n: int, seed: int, space: str | None = None) -> list[ArchSpec]:
    """``n`` specs from ``carve.search.spaces.get_space(space)``, or perturbed zoo specs."""
    if space:
        from carve.latency.table import sample_specs
        from carve.search.spaces import get_space

        return sample_specs(get_space(space), n, seed)
    rng = random.Random(seed)
    bases = [get_entry(b).spec() for b in BASES]
    return [perturb(rng.choice(bases), rng) for _ in range(n)]


def kendall_tau(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def run_size(specs: list[ArchSpec], fit: int, size: int, args: argparse.Namespace, db: LatencyCache,
             table: LatencyTable | None) -> tuple[LatencyTable, list[dict]]:
    part_proto = Protocol(min_runs=args.min_runs, rel_ci=0.02, max_time_s=args.part_time, clock=args.clock)
    model_proto = Protocol(min_runs=args.min_runs, rel_ci=0.01, max_time_s=args.model_time, clock=args.clock)
    rows = []
    for i, spec in enumerate(tqdm(specs, desc=f"{size} px", unit="arch")):
        table = build_table([spec], input_sizes=size, threads=args.threads, fit_models=0, cache=db,
                            protocol=part_proto, table=table, save=False, progress=False)
        r = measure(spec, input_size=size, threads=args.threads, cache=db, protocol=model_proto)
        summed, n, params_m = table.summed(spec, size)
        rows.append(dict(name=spec.name, size=size, hash=spec.hash(), summed_ms=summed, parts=n, params_m=params_m,
                         measured_ms=r.median_ms, p10_ms=r.p10_ms, p90_ms=r.p90_ms, fit=i < fit))
    for rep in range(1, args.repeats):  # more passes over the whole models, in a new order each time
        order = random.Random(args.seed * 1000 + rep).sample(range(len(specs)), len(specs))
        for i in tqdm(order, desc=f"{size} px, pass {rep + 1}/{args.repeats}", unit="arch"):
            r = measure(specs[i], input_size=size, threads=args.threads, cache=False, protocol=model_proto)
            rows[i].setdefault("passes_ms", [rows[i]["measured_ms"]]).append(r.median_ms)
    for r in rows:
        if "passes_ms" in r:
            r["measured_ms"] = statistics.median(r["passes_ms"])
    table.fit_points[str(size)] = [[r["summed_ms"], r["parts"], r["params_m"], r["measured_ms"]]
                                   for r in rows if r["fit"]]
    table.corrections[str(size)] = fit_correction(table.fit_points[str(size)])
    for r, spec in zip(rows, specs):
        r["predicted_ms"] = predict(spec, table, size)
    return table, rows


def summary(rows: list[dict]) -> dict:
    test = [r for r in rows if not r["fit"]]
    err = [abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in test]
    return dict(n=len(test), within_10pct=sum(e <= 0.10 for e in err) / len(err), mape=sum(err) / len(err),
                kendall_tau=kendall_tau([r["predicted_ms"] for r in test], [r["measured_ms"] for r in test]),
                max_err=max(err))


def plot(rows: list[dict], sizes: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 5))
    for ax, size in zip(axes if len(sizes) > 1 else [axes], sizes):
        sel = [r for r in rows if r["size"] == size]
        for fit, color, label in ((False, "tab:blue", "held out"), (True, "tab:orange", "fitted on")):
            pts = [r for r in sel if r["fit"] == fit]
            ax.scatter([r["measured_ms"] for r in pts], [r["predicted_ms"] for r in pts], s=12, c=color, label=label)
        lo = min(min(r["measured_ms"], r["predicted_ms"]) for r in sel) * 0.9
        hi = max(max(r["measured_ms"], r["predicted_ms"]) for r in sel) * 1.1
        ax.plot([lo, hi], [lo, hi], "k-", lw=1)
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="gray", alpha=0.2, label="+-10%")
        s = summary(sel)
        ax.set(xlabel="measured (ms)", ylabel="predicted (ms)", xlim=(lo, hi), ylim=(lo, hi),
               title=f"{size} px: {s['within_10pct']:.0%} within 10%, MAPE {s['mape']:.1%}, tau {s['kendall_tau']:.3f}")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=100, help="architectures evaluated per input size")
    p.add_argument("--fit", type=int, default=10, help="extra architectures the correction is fitted on")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 32])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--min-runs", type=int, default=30)
    p.add_argument("--part-time", type=float, default=0.6, help="time limit per part measurement (s)")
    p.add_argument("--model-time", type=float, default=2.0, help="time limit per model measurement (s)")
    p.add_argument("--repeats", type=int, default=1,
                   help="passes over the whole models (ground truth = median of the passes' medians)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space", default=None, help="search space name (default: perturbed zoo specs)")
    p.add_argument("--db", type=Path, default=None, help="SQLite cache (default: a fresh one in --out)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--save-table", action="store_true", help="also write the latency table (JSON) beside the results")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    db = LatencyCache(args.db or args.out / f"latency_predictor_{args.space or 'zoo'}_{args.clock}.db")
    specs = sample(args.fit + args.count, args.seed, args.space)
    start, rows, table = time.time(), [], None
    for size in args.sizes:
        table, size_rows = run_size(specs, args.fit, size, args, db, table)
        rows += size_rows
    stem = args.out / f"latency_predictor_{args.space or 'zoo'}_{args.clock}"
    result = dict(fingerprint=device_fingerprint("cpu", args.threads), args={k: str(v) for k, v in vars(args).items()},
                  wall_s=round(time.time() - start, 1), distinct_parts=len(table.entries),
                  summary={str(s): summary([r for r in rows if r["size"] == s]) for s in args.sizes},
                  corrections={k: vars(v) for k, v in table.corrections.items()}, rows=rows)
    tmp = stem.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, stem.with_suffix(".json"))
    plot(rows, args.sizes, stem.with_suffix(".png"))
    if args.save_table:
        table.save(stem.with_name(stem.name + "_table.json"))
    print(f"{'size':>5s} {'n':>4s} {'within 10%':>10s} {'MAPE':>7s} {'tau':>6s} {'max err':>8s}   "
          f"(threads {args.threads}, clock {args.clock}, {len(table.entries)} distinct parts)")
    for s in args.sizes:
        m = result["summary"][str(s)]
        print(f"{s:5d} {m['n']:4d} {m['within_10pct']:10.1%} {m['mape']:7.2%} {m['kendall_tau']:6.3f} {m['max_err']:8.1%}")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')} in {result['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
