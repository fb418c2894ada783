"""Batch-1 CPU latency of every zoo model beside its torchvision/timm twin, and carve vs MobileNetV3.

Each pair is timed interleaved (ours, twin, ours, twin, ...) in this one process after warm-up, so
the ratio ours/twin survives the drift of a shared machine; a zoo model should cost no more than
its twin (ratio <= 1.05), in eager PyTorch and in ONNX Runtime. Re-parameterisable models
(MobileOne, ours and timm's) are timed deployed. Then carve_100 against mobilenet_v3_large_100 in
both runtimes (timed in blocks). Prints tables, writes JSON and a PNG of the ratios.

    python benchmarks/zoo_latency.py --threads 1 --clock cpu
    python benchmarks/zoo_latency.py 'mobilenet_v4*' 'mobileone*' 'mnasnet*' squeezenet_1_0 squeezenet_1_1 \
        fbnet_c efficientnet_v2_b0 --runtimes eager onnxruntime   # the twins added with issue 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from carve.latency import Protocol, compare, device_fingerprint, physical_cores
from carve.latency.zoo_bench import bench_zoo, format_rows


def plot_ratios(rows: list[dict], tolerance: float, path: Path) -> None:
    """Bars of ours/twin per model, one colour per runtime, with the tolerance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    twins = [r for r in rows if r.get("peer")]
    if not twins:
        return
    models = list(dict.fromkeys(r["model"] for r in twins))
    runtimes = list(dict.fromkeys(r["runtime"] for r in twins))
    width = 0.8 / len(runtimes)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(models) * len(runtimes)), 4.5))
    for i, runtime in enumerate(runtimes):
        ratio = {r["model"]: r["ratio"] for r in twins if r["runtime"] == runtime}
        xs = [j + i * width for j, m in enumerate(models) if m in ratio]
        ax.bar(xs, [ratio[m] for m in models if m in ratio], width, label=runtime)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(tolerance, color="tab:red", lw=0.8, ls="--", label=f"tolerance {tolerance}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))], models, rotation=75, fontsize=7)
    ax.set(ylabel="latency ours / twin", title="zoo models against their torchvision/timm twins, batch 1")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", default=["*"], help="zoo names or globs (default: all)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=None, help="default: physical cores available")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--max-time", type=float, default=4.0, help="timed seconds per model and pair")
    p.add_argument("--tolerance", type=float, default=1.05, help="flag twins slower than this ratio")
    p.add_argument("--runtimes", nargs="+", choices=["eager", "onnxruntime"], default=["eager", "onnxruntime"],
                   help="runtimes the twins are timed in")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    threads = args.threads or physical_cores()
    proto = Protocol(min_runs=40, rel_ci=0.01, max_time_s=args.max_time, clock=args.clock)
    start = time.time()
    rows, over = [], {}
    for runtime in args.runtimes:
        found = bench_zoo(args.names, input_size=args.size, threads=threads, vs_peers=True, protocol=proto,
                          runtime=runtime)
        print(f"\n{runtime}:\n{format_rows(found)}")
        twins = [r for r in found if r.get("peer")]
        over[runtime] = [r["model"] for r in twins if r["ratio"] > args.tolerance]
        if twins:
            print(f"{len(twins)} twins; ratio ours/twin: min {min(r['ratio'] for r in twins):.3f}, "
                  f"max {max(r['ratio'] for r in twins):.3f}; above {args.tolerance}: "
                  f"{', '.join(over[runtime]) or 'none'}")
        rows += [dict(r, runtime=runtime) for r in found]
    carve_vs = {}
    for runtime in ("eager", "onnxruntime"):
        c = compare(["carve_100", "mobilenet_v3_large_100"], input_size=args.size, threads=threads, runtime=runtime,
                    protocol=proto)
        print(f"\ncarve_100 vs mobilenet_v3_large_100, {runtime}:\n{c.table()}")
        carve_vs[runtime] = dict(carve_ms=c.results[0].median_ms, mobilenet_v3_large_ms=c.results[1].median_ms,
                                 ratio_carve_over_mnv3=1 / c.ratios[1] if c.ratios[1] else None,
                                 results=[r.to_dict() for r in c.results])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"zoo_latency_{args.size}px_{threads}t_{args.clock}.json"
    plot_ratios(rows, args.tolerance, path.with_suffix(".png"))
    data = dict(fingerprint=device_fingerprint("cpu", threads), size=args.size, threads=threads, clock=args.clock,
                protocol=proto.as_dict(), wall_s=round(time.time() - start, 1), twins_over_tolerance=over,
                runtimes=args.runtimes,
                rows=[{k: v for k, v in r.items() if k not in ("fingerprint",)} for r in rows],
                carve_vs_mobilenet_v3_large=carve_vs)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    print(f"\nwrote {path} and {path.with_suffix('.png')} in {data['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
