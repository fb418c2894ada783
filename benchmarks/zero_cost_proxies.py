"""Rank correlation of zero-cost proxies (and params, MACs) with proxy-trained CIFAR-10 accuracy.

Samples ``--n`` architectures from a space, scores each with every proxy on one batch, trains each
with the search's proxy recipe (``carve run``'s: one epoch on ``--train-per-class`` images per class
at 32 px with one stride removed, lr 0.8 per 256 images; ``--steps`` caps it), and reports Spearman
and Kendall correlations (table + JSON + PNG).

    PYTHONPATH=. python benchmarks/zero_cost_proxies.py --space carve --n 30
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from carve.search import ObjectiveConfig, get_space
from carve.search.objective import Objective
from carve.search.proxies import BASELINES, PROXIES
from carve.files import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="mbconv")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--steps", type=int, default=0, help="training steps per architecture (0: one epoch)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.8, help="learning rate per 256 images")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--data", default="../shared/data/cifar10")
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--out", default="runs/bench_proxies")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (Path(args.data) / "train").is_dir():
        raise SystemExit(f"--data: no train/ folder under {args.data} (CIFAR-10 as ImageFolder expected)")
    from scipy.stats import kendalltau, spearmanr

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    space = get_space(args.space)
    names = list(PROXIES) + list(BASELINES)
    rows = []
    t0 = time.perf_counter()
    for i in range(args.n):
        spec, res, _ = space.sample_random(args.seed * 1000 + i)
        row = dict(name=spec.name)
        for name in names:
            cfg = ObjectiveConfig(accuracy=name, data=args.data, latency="none", proxy_batch=32, seed=args.seed)
            row[name] = Objective(cfg, out).accuracy(spec)
        cfg = ObjectiveConfig(accuracy="proxy", data=args.data, latency="none", max_steps=args.steps, epochs=1,
                              batch_size=args.batch_size, lr=args.lr, small_input=1,
                              train_per_class=args.train_per_class, val_per_class=args.val_per_class, seed=args.seed)
        row["trained_top1"] = Objective(cfg, out).accuracy(spec, name=f"proxy-{i}")
        rows.append(row)
        print(f"[{i + 1}/{args.n}] {spec.name}: top-1 {row['trained_top1']:.2f}  "
              + " ".join(f"{n}={row[n]:.3g}" for n in names), flush=True)
    acc = [r["trained_top1"] for r in rows]
    corr = {}
    for name in names:
        vals = [r[name] for r in rows]
        corr[name] = dict(spearman=float(spearmanr(vals, acc).statistic), kendall=float(kendalltau(vals, acc).statistic))
    write_json(out / "zero_cost_proxies.json", dict(space=args.space, n=args.n, steps=args.steps, rows=rows,
                                                    correlation=corr, wall_s=time.perf_counter() - t0))
    budget = f"{args.steps} steps" if args.steps else "one epoch"
    print(f"\n{'proxy':10s} {'Spearman':>9s} {'Kendall':>8s}   (vs top-1 after {budget}, n={args.n})")
    for name, c in corr.items():
        print(f"{name:10s} {c['spearman']:9.3f} {c['kendall']:8.3f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(corr), [c["spearman"] for c in corr.values()])
    ax.set_ylabel("Spearman vs proxy-trained top-1")
    ax.set_title(f"{args.space}: n={args.n}, {budget} of proxy training")
    ax.axhline(0, c="0.3", lw=0.8)
    fig.savefig(out / "zero_cost_proxies.png", dpi=120, bbox_inches="tight")
    print(f"wrote {out / 'zero_cost_proxies.png'}")


if __name__ == "__main__":
    main()
