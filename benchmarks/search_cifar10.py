"""Search under mobilenet_v3_large_100's latency, then train searched and hand-designed models alike.

1. Latency budget = mobilenet_v3_large_100's measured latency here (ONNX Runtime, 224 px, batch 1).
2. Search ``mbconv`` and ``carve`` (resolution fixed at 224) with proxy training on CIFAR-10 for a
   fixed wall budget (``--search-s``, split between the spaces).
3. Train the best feasible model of each space and every hand-designed zoo model under the budget
   with the same recipe; report accuracy and latency side by side (table + JSON + PNG).

    PYTHONPATH=. python benchmarks/search_cifar10.py --search-s 360 --out runs/bench_search
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from carve.search import ObjectiveConfig, SearchConfig, run_search
from carve.search.objective import measure_latency
from carve.search.study import write_json
from carve.zoo import create_model, profile

ZOO = ["mobilenet_v3_large_100", "mobilenet_v3_large_075", "mobilenet_v3_small_100", "mobilenet_v2_100",
       "shufflenet_v2_100", "carve_100", "carve_075"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10")
    ap.add_argument("--out", default="runs/bench_search")
    ap.add_argument("--search-s", type=float, default=300, help="wall budget for both searches together")
    ap.add_argument("--spaces", nargs="+", default=["mbconv", "carve"])
    ap.add_argument("--zoo", nargs="+", default=ZOO)
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--proxy-steps", type=int, default=40, help="proxy-training steps per trial")
    ap.add_argument("--final-steps", type=int, default=150, help="training steps of the final comparison")
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (Path(args.data) / "train").is_dir():
        raise SystemExit(f"--data: no train/ folder under {args.data} (CIFAR-10 as ImageFolder expected)")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    obj = ObjectiveConfig(accuracy="proxy", data=args.data, max_steps=args.proxy_steps, epochs=1,
                          batch_size=args.batch_size, train_per_class=args.train_per_class,
                          val_per_class=args.val_per_class, runtime=args.runtime, threads=args.threads,
                          quick_latency=True, latency_cache=str(out / "latency.db"), seed=args.seed)

    print("measuring hand-designed models ...", flush=True)
    zoo = {}
    for name in args.zoo:
        spec = create_model(name).spec.with_num_classes(10)
        zoo[name] = dict(latency_ms=measure_latency(spec, 224, obj, remeasure=True),
                         macs_m=profile(create_model(spec)).macs / 1e6)
        print(f"  {name:24s} {zoo[name]['latency_ms']:.3f} ms", flush=True)
    budget = zoo["mobilenet_v3_large_100"]["latency_ms"]
    print(f"budget = mobilenet_v3_large_100 = {budget:.3f} ms ({args.runtime})", flush=True)

    searched = {}
    per_space = args.search_s / len(args.spaces)
    for space in args.spaces:
        cfg = SearchConfig(space=space, objective=obj, study_name=f"bench-{space}", out_dir=str(out), trials=1000,
                           timeout_s=per_space, latency_budget_ms=budget, resolution=224, seed=args.seed,
                           resume=True, population=8)
        result = run_search(cfg)
        feasible = [e for e in result.pareto if (e.remeasured_ms or e.latency_ms) <= budget * 1.05]
        print(f"search {space}: {result.n_complete} complete, {result.n_failed} failed, "
              f"{len(result.pareto)} on the front", flush=True)
        if feasible:
            best = max(feasible, key=lambda e: e.accuracy)
            searched[f"searched_{space}"] = dict(spec=best.spec, trial=best.number, proxy_accuracy=best.accuracy,
                                                 n_complete=result.n_complete)
    search_s = time.perf_counter() - t0

    from carve.train import TrainConfig, fit
    from carve.zoo import parse_spec

    rows = []
    candidates = [(n, create_model(n).spec, "zoo") for n in args.zoo if zoo[n]["latency_ms"] <= budget * 1.05]
    candidates += [(n, parse_spec(v["spec"]), "searched") for n, v in searched.items()]
    for name, spec, kind in candidates:
        print(f"training {name} ({args.final_steps} steps) ...", flush=True)
        res = fit(TrainConfig(model=spec, data=args.data, out_dir=str(out / "final" / name), epochs=100,
                              max_steps=args.final_steps, batch_size=args.batch_size, lr=0.4, small_input=2,
                              train_per_class=args.train_per_class, val_per_class=args.val_per_class * 2,
                              seed=args.seed, workers=0, progress=False, tensorboard=False, warmup_epochs=0.0,
                              cutmix_alpha=0.0, mix_prob=0.0, device="cpu"))
        spec10 = spec.with_num_classes(10)
        lat = measure_latency(spec10, 224, obj, remeasure=True)
        rows.append(dict(name=name, kind=kind, top1=res.final_top1, latency_ms=lat, budget_ms=budget,
                         macs_m=profile(create_model(spec10)).macs / 1e6,
                         params_m=sum(p.numel() for p in create_model(spec10).parameters()) / 1e6))
    report = dict(budget_ms=budget, runtime=args.runtime, zoo=zoo, searched=searched, rows=rows,
                  search_s=search_s, total_s=time.perf_counter() - t0, args=vars(args))
    write_json(out / "search_cifar10.json", report)
    print(f"\n{'model':24s} {'kind':9s} {'top-1 %':>8s} {'latency ms':>10s} {'MACs M':>8s} {'params M':>8s}")
    for r in sorted(rows, key=lambda r: r["latency_ms"]):
        print(f"{r['name']:24s} {r['kind']:9s} {r['top1']:8.2f} {r['latency_ms']:10.3f} {r['macs_m']:8.1f} "
              f"{r['params_m']:8.2f}")
    print(f"budget {budget:.3f} ms; search {search_s:.0f} s; total {report['total_s']:.0f} s")
    _plot(rows, budget, out / "search_cifar10.png")


def _plot(rows: list[dict], budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in rows:
        marker = "o" if r["kind"] == "searched" else "*"
        ax.scatter([r["latency_ms"]], [r["top1"]], marker=marker, s=80)
        ax.annotate(r["name"], (r["latency_ms"], r["top1"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.axvline(budget, ls="--", c="0.4", label=f"budget (mobilenet_v3_large_100) {budget:.2f} ms")
    ax.set_xlabel("latency ms (ONNX Runtime, 224 px, batch 1)")
    ax.set_ylabel("CIFAR-10 top-1 % (same short recipe)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
