"""Does keeping parts of a network in FP32 make its ONNX Runtime INT8 graph faster? (issue 19)

    PYTHONPATH=. python benchmarks/int8_keep_float_speed.py [--models carve_100 ...] [--input-size 224]
        [--threads 2] [--repeats 3]

The compress pipeline's accuracy-controlled INT8 times the fully quantized graph first and, when even
that is not ``--keep-if-faster`` times faster than the model before it, drops the step without
measuring sensitivity: it assumes that returning blocks to FP32 never makes an INT8 graph faster.
In ONNX Runtime an FP32 block also skips its QuantizeLinear/DequantizeLinear glue, so this measures
it: for each model (shipped ``carve:tiny-imagenet`` weights; calibration on the training shards at
64 px, the graph's height and width free), one calibration quantized to several variants (nothing in
FP32; the stem and first two blocks, what accuracy control returned first on the main job's winner;
every SE gate; the head; the last third of the blocks; the first half), all timed interleaved in one
process at ``--input-size`` with the FP32 model, ``--repeats`` times. A variant "beats" the fully
quantized graph when its median over the repeats is faster by more than the spread of the fully
quantized graph's own repeats.

Writes ``benchmarks/results/int8_keep_float_speed.{json,md,png}``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

from compress_accuracy import MODELS, batches, load, shipped_parser, write_results


def variants(units: list[str], modules: list[str]) -> dict[str, list[str]]:
    """Named keep-float pattern lists over a graph's blocks (in graph order)."""
    out = {"nothing": [], "stem + first 2 blocks": units[:3]}
    if any(m.endswith(".se") for m in modules):
        out["every SE gate"] = ["*.se"]
    out["head (last 2 units)"] = units[-2:]
    out["last third"] = units[-(len(units) // 3):]
    out["first half"] = units[:len(units) // 2]
    return out


def run_model(name: str, args, calib: list) -> dict:
    from carve.compress.quantization import OrtModel
    from carve.compress.step_timing import TimedModel, time_together
    from carve.latency.qdq import QdqGraph

    model, trained = load(name, args.pretrained)
    out = Path(args.out_dir) / name
    images = [x for batch, _ in calib for x in batch.split(1)][:args.calib_images]
    t0 = time.perf_counter()
    graph = QdqGraph(model, images, out, "percentile")
    kinds = variants(graph.units("block"), graph.module_names())
    int8 = {k: OrtModel(graph.quantize(out / f"int8_{i}.onnx", keep_float=p), args.threads)
            for i, (k, p) in enumerate(kinds.items())}
    timed = [TimedModel(model, "onnxruntime")] + [TimedModel(m, "eager") for m in int8.values()]
    repeats = [[t.median_ms for t in time_together(timed, args.input_size, 3, args.threads)]
               for _ in range(args.repeats)]
    ms = [statistics.median(r[i] for r in repeats) for i in range(len(timed))]
    fully = [r[1] for r in repeats]
    spread = max(fully) - min(fully)
    rows = []
    for i, (kind, patterns) in enumerate(kinds.items(), start=1):
        rows.append(dict(variant=kind, keep_float=patterns, ms=round(ms[i], 3),
                         ms_repeats=[round(r[i], 3) for r in repeats], speedup_vs_fp32=round(ms[0] / ms[i], 3),
                         vs_fully_int8=round(ms[1] / ms[i], 3),
                         beats_fully_int8=bool(i > 1 and ms[i] < ms[1] - spread)))
    return dict(model=name, trained=trained, fp32_ms=round(ms[0], 3), fully_int8_spread_ms=round(spread, 3),
                variants=rows, seconds=round(time.perf_counter() - t0, 1))


def table(results: list[dict]) -> str:
    lines = ["| model | kept in FP32 | ms | x FP32 | x fully INT8 | faster than fully INT8 |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | (FP32 model) | {r['fp32_ms']:.2f} | 1.00x | | |")
        for v in r["variants"]:
            verdict = "" if v["variant"] == "nothing" else ("**yes**" if v["beats_fully_int8"] else "no")
            lines.append(f"| | {v['variant']} | {v['ms']:.2f} | {v['speedup_vs_fp32']:.2f}x | "
                         f"{v['vs_fully_int8']:.2f}x | {verdict} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carve.files import save_figure

    kinds = list(dict.fromkeys(v["variant"] for r in results for v in r["variants"]))
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        xs, ys = [], []
        for j, r in enumerate(results):
            v = next((v for v in r["variants"] if v["variant"] == kind), None)
            if v is not None:
                xs.append(j + width * (i - (len(kinds) - 1) / 2))
                ys.append(v["speedup_vs_fp32"])
        ax.bar(xs, ys, width, label=f"FP32: {kind}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(results)), [r["model"] for r in results], fontsize=8)
    ax.set(ylabel="speed-up over FP32 (ONNX Runtime)", title="INT8 with parts kept in FP32, timed together")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = shipped_parser(__doc__, MODELS, "calibration size (the shards' native size)")
    ap.add_argument("--input-size", type=int, default=224, help="latency input size")
    ap.add_argument("--calib-per-class", type=int, default=1)
    ap.add_argument("--calib-images", type=int, default=128, help="as the pipeline's INT8 step")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timings of all variants")
    ap.add_argument("--out-dir", default="runs/int8_keep_float_speed")
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    calib = batches(args.data, "train", args.img_size, args.calib_per_class)
    results = []
    for name in args.models:
        results.append(run_model(name, args, calib))
        print(f"{name}: done in {results[-1]['seconds']} s", flush=True)
    text = table(results)
    print(text)
    write_results("int8_keep_float_speed", argv, args, results, text, None, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
