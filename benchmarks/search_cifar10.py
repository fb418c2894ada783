"""Search under mobilenet_v3_large_100's latency, then train searched and hand-designed models alike.

1. Latency budget = mobilenet_v3_large_100's measured latency here (ONNX Runtime, 224 px, batch 1).
2. Search ``mbconv`` and ``carve`` (resolution fixed at 224) with proxy training on CIFAR-10 for a
   fixed wall budget (``--search-s``, split between the spaces).
3. Train the best feasible model of each space and every zoo model under the budget with the same
   recipe; time them all again interleaved in one process (ratios to mobilenet_v3_large_100); report
   accuracy and latency side by side (table + JSON + PNG) and whether the goal is met.

Proxy and final recipes are `carve run`'s (32 px with one stride removed, lr 0.8 per 256 images,
no CutMix, BN statistics re-estimated on 20 batches before evaluation): a proxy trial trains 1 epoch,
the final comparison ``--final-epochs`` with a short warm-up.

    PYTHONPATH=. python benchmarks/search_cifar10.py --search-s 900 --out runs/bench_search
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from carve.search import ObjectiveConfig, SearchConfig, run_search
from carve.search.objective import measure_latency
from carve.files import write_json
from carve.latency import compare
from carve.zoo import create_model, list_models, profile



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10")
    ap.add_argument("--out", default="runs/bench_search")
    ap.add_argument("--search-s", type=float, default=300, help="wall budget for both searches together (0: reuse the studies in --out)")
    ap.add_argument("--spaces", nargs="+", default=["mbconv", "carve"])
    ap.add_argument("--zoo", nargs="+", default=None, help="zoo models to compare (default: all registered)")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=None, help="latency threads (default: all cores)")
    ap.add_argument("--train-threads", type=int, default=1, help="torch threads for proxy and final training")
    ap.add_argument("--proxy-steps", type=int, default=0, help="proxy-training steps per trial (0: one epoch)")
    ap.add_argument("--train-per-class", type=int, default=300, help="proxy training images per class")
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--final-epochs", type=int, default=3, help="epochs of the final comparison")
    ap.add_argument("--final-per-class", type=int, default=800, help="final training images per class")
    ap.add_argument("--test-per-class", type=int, default=300, help="test images per class for the final top-1")
    ap.add_argument("--lr", type=float, default=0.8, help="learning rate per 256 images")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--finalists", type=int, default=3,
                    help="most accurate feasible front points per space trained with the final recipe; the best on "
                         "held-out training images is the searched model")
    ap.add_argument("--holdout-per-class", type=int, default=300,
                    help="training images per class (from the end of each class) that choose among the finalists")
    ap.add_argument("--warm-start", nargs="*", default=None,
                    help="zoo models whose nearest points start each search (default: every zoo model under the "
                         "budget that the space can express; none: no warm start)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (Path(args.data) / "train").is_dir():
        raise SystemExit(f"--data: no train/ folder under {args.data} (CIFAR-10 as ImageFolder expected)")
    args.zoo = args.zoo or list_models()
    torch.set_num_threads(args.train_threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    obj = ObjectiveConfig(accuracy="proxy", data=args.data, max_steps=args.proxy_steps, epochs=1,
                          batch_size=args.batch_size, lr=args.lr, small_input=1, train_per_class=args.train_per_class,
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
        warm = warm_start_models(space, args.warm_start, [n for n in args.zoo if zoo[n]["latency_ms"] <= budget])
        print(f"search {space}: warm start (a new study only) from {', '.join(warm) or 'nothing'}", flush=True)
        cfg = SearchConfig(space=space, objective=obj, study_name=f"bench-{space}", out_dir=str(out), trials=1000,
                           timeout_s=per_space, latency_budget_ms=budget, resolution=224, seed=args.seed,
                           resume=True, population=8, warm_start=tuple(warm))
        if args.search_s > 0:
            result = run_search(cfg)
        else:  # reuse the studies of an earlier run (re-measuring their Pareto sets)
            from carve.search.storage import load_study
            from carve.search.study import finish

            result = finish(cfg, load_study(cfg.name, cfg.storage_url))
        feasible = [e for e in result.pareto if (e.remeasured_ms or e.latency_ms) <= budget * 1.05]
        print(f"search {space}: {result.n_complete} complete, {result.n_failed} failed, "
              f"{len(result.pareto)} on the front", flush=True)
        if feasible:  # the most accurate feasible points of the front go on to the final recipe
            finalists = sorted(feasible, key=lambda e: -e.accuracy)[:args.finalists]
            searched[f"searched_{space}"] = dict(n_complete=result.n_complete, finalists=[
                dict(spec=e.spec, trial=e.number, proxy_accuracy=e.accuracy) for e in finalists])
    search_s = time.perf_counter() - t0

    from carve.train import TrainConfig, evaluate, fit
    from carve.zoo import parse_spec

    def train_final(name: str, spec, data: str, val_per_class: int) -> dict:
        done = out / "final" / name / "result.json"
        if done.is_file():  # a re-run keeps what finished
            return json.loads(done.read_text())
        print(f"training {name} ({args.final_epochs} epochs) ...", flush=True)
        res = fit(TrainConfig(model=spec, data=data, out_dir=str(out / "final" / name), epochs=args.final_epochs,
                              batch_size=args.batch_size, lr=args.lr, small_input=1,
                              train_per_class=args.final_per_class, val_per_class=val_per_class,
                              seed=args.seed, workers=0, progress=False, tensorboard=False, warmup_epochs=0.3,
                              cutmix_alpha=0.0, mix_prob=0.0, bn_recalibration=20, device="cpu"))
        result = dict(top1=res.final_top1, wall_s=res.wall_s)
        if data != args.data:  # trained with a held-out validation split: report test top-1 as for the rest
            result = dict(holdout_top1=res.final_top1, wall_s=res.wall_s,
                          top1=evaluate(res.model, args.data, img_size=32, per_class=args.test_per_class,
                                        workers=0, device="cpu")["top1"])
        write_json(done, result)
        return result

    candidates = [(n, create_model(n).spec, "zoo") for n in args.zoo if zoo[n]["latency_ms"] <= budget * 1.05]
    trained = {name: train_final(name, spec, args.data, args.test_per_class) for name, spec, _ in candidates}
    holdout = holdout_root(Path(args.data), out / "holdout", args.final_per_class, args.holdout_per_class)
    for key, v in searched.items():  # chosen by held-out training images, never by the test images
        for f in v["finalists"]:
            f.update(train_final(f"{key}_t{f['trial']}", parse_spec(f["spec"]), str(holdout), args.holdout_per_class))
        best = max(v["finalists"], key=lambda f: f["holdout_top1"])
        v.update(spec=best["spec"], trial=best["trial"], proxy_accuracy=best["proxy_accuracy"])
        candidates.append((key, parse_spec(best["spec"]), "searched"))
        trained[key] = best

    # every candidate timed again, interleaved in one process with the reference first: the figure
    # that decides "no more latency" is a ratio, not two absolute times taken minutes apart
    specs10 = [spec.with_num_classes(10) for _, spec, _ in candidates]
    ref = next(i for i, (n, _, _) in enumerate(candidates) if n == "mobilenet_v3_large_100")
    order = [ref] + [i for i in range(len(candidates)) if i != ref]
    cmp = compare([specs10[i] for i in order], names=[candidates[i][0] for i in order], input_size=224,
                  threads=args.threads, runtime=args.runtime, progress=True)
    print(cmp.table())
    timing = {n: (r, q) for n, r, q in zip(cmp.names, cmp.results, cmp.ratios)}
    rows = []
    for (name, spec, kind), spec10 in zip(candidates, specs10):
        r, q = timing[name]
        prof = profile(create_model(spec10))
        rows.append(dict(name=name, kind=kind, top1=trained[name]["top1"], latency_ms=r.median_ms, p10_ms=r.p10_ms,
                         p90_ms=r.p90_ms, vs_reference=q, train_s=trained[name].get("wall_s"),
                         macs_m=prof.macs / 1e6, params_m=prof.params / 1e6))
    report = dict(budget_ms=budget, runtime=args.runtime, zoo=zoo, searched=searched, rows=rows,
                  verdict=verdict(rows), search_s=search_s, total_s=time.perf_counter() - t0, args=vars(args))
    write_json(out / "search_cifar10.json", report)
    print(f"\n{'model':24s} {'kind':9s} {'top-1 %':>8s} {'latency ms':>10s} {'vs MNv3-L':>9s} {'MACs M':>8s} "
          f"{'params M':>8s}")
    for r in sorted(rows, key=lambda r: r["latency_ms"]):
        print(f"{r['name']:24s} {r['kind']:9s} {r['top1']:8.2f} {r['latency_ms']:10.3f} {r['vs_reference']:9.3f} "
              f"{r['macs_m']:8.1f} {r['params_m']:8.2f}")
    print(json.dumps(report["verdict"], indent=1))
    print(f"budget {budget:.3f} ms; search {search_s:.0f} s; total {report['total_s']:.0f} s")
    _plot(rows, next(r["latency_ms"] for r in rows if r["name"] == "mobilenet_v3_large_100"), out / "search_cifar10.png")


def holdout_root(data: Path, root: Path, train_per_class: int, per_class: int) -> Path:
    """An image-folder root whose train/ is ``data``'s and whose val/ is the last ``per_class`` training
    images of each class (links), disjoint from the first ``train_per_class`` that the models train on."""
    for cls in sorted(p.name for p in (data / "train").iterdir() if p.is_dir()):
        files = sorted((data / "train" / cls).iterdir())
        if train_per_class + per_class > len(files):
            raise SystemExit(f"--holdout-per-class: {cls} has {len(files)} training images, fewer than "
                             f"{train_per_class} + {per_class}")
        (root / "val" / cls).mkdir(parents=True, exist_ok=True)
        for f in files[-per_class:]:
            link = root / "val" / cls / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    if not (root / "train").exists():
        (root / "train").symlink_to((data / "train").resolve())
    return root


def warm_start_models(space: str, asked: list[str] | None, under_budget: list[str]) -> list[str]:
    """The zoo models a search starts from: those asked, or every one under the budget the space can express."""
    if asked is not None:
        return [] if asked == ["none"] else asked
    from carve.search import get_space
    from carve.search.spaces import SpaceError

    found = []
    for name in under_budget:
        try:
            get_space(space).nearest(create_model(name).spec)
        except SpaceError:
            continue
        found.append(name)
    return found


def verdict(rows: list[dict]) -> dict:
    """The benchmark's goal: the best searched model at least as accurate as every hand-designed model
    within the budget (latency ratio to mobilenet_v3_large_100 <= 1 in the final interleaved timing),
    at no more latency than the budget; and which hand-designed models it dominates outright."""
    zoo = [r for r in rows if r["kind"] == "zoo" and r["vs_reference"] <= 1.0]
    found = [r for r in rows if r["kind"] == "searched" and r["vs_reference"] <= 1.0]
    if not found or not zoo:
        return dict(goal_met=False, reason="no searched model within the budget" if not found else "no zoo model")
    best = max(found, key=lambda r: r["top1"])
    strongest = max(zoo, key=lambda r: r["top1"])
    peers = [r for r in zoo if not r["name"].startswith("carve_")]  # MobileNet, ShuffleNet, ...: not carve's own
    strongest_peer = max(peers, key=lambda r: r["top1"]) if peers else None
    return dict(goal_met=best["top1"] >= strongest["top1"],
                goal_met_vs_peer_designs=bool(strongest_peer) and best["top1"] >= strongest_peer["top1"],
                strongest_peer_design=strongest_peer and strongest_peer["name"],
                strongest_peer_top1=strongest_peer and strongest_peer["top1"],
                searched=best["name"], searched_top1=best["top1"],
                searched_vs_reference=best["vs_reference"], strongest_hand_designed=strongest["name"],
                strongest_top1=strongest["top1"], strongest_vs_reference=strongest["vs_reference"],
                dominates=[r["name"] for r in zoo if best["top1"] >= r["top1"] and best["latency_ms"] <= r["latency_ms"]],
                not_dominated=[r["name"] for r in zoo if not (best["top1"] >= r["top1"]
                                                              and best["latency_ms"] <= r["latency_ms"])])


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
