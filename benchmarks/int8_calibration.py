"""ONNX Runtime INT8 calibration: which way of setting activation ranges holds the shipped models (issues 18, 19).

For each model (default: the shipped ``carve:tiny-imagenet`` weights) and each ``--calibrations``
x ``--calib-per-class`` pair: ONNX Runtime static QDQ INT8 (``carve.compress.quantize``, everything
quantized), its held-out top-1 against the FP32 model's and its top-1 agreement with it, at the
shards' native ``--img-size`` (64 px, what the weights were trained at) on the held-out split
(``carve.train.shards``, 10 % of the samples chosen by key); calibration images are the first
``k`` of each class of the training split. Latency is not measured: the calibration changes the
ranges in the graph, not its operators.

    PYTHONPATH=. python benchmarks/int8_calibration.py [--models carve_100 ...]
        [--calibrations percentile entropy minmax] [--calib-per-class 1 5] [--eval-per-class 5]

Results: ``benchmarks/results/int8_calibration.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compress_accuracy import MODELS, batches, load, shipped_parser, write_results  # noqa: E402
from weight_clustering import agreement  # noqa: E402


def run_model(name: str, args: argparse.Namespace, calibs: dict[int, list], test: list) -> list[dict]:
    from carve.compress import quantize
    from carve.compress.sensitivity import top1

    model, trained = load(name, args.pretrained)
    fp32 = top1(model, test)[0]
    rows = []
    for method in args.calibrations:
        for k, calib in calibs.items():
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="carve_calib_") as tmp:
                int8, _ = quantize(model, calib=calib, runtime="onnxruntime", out_dir=tmp, calibration=method,
                                   calib_images=sum(len(y) for _, y in calib), threads=args.threads)
                row = dict(model=name, trained=trained, calibration=method, calib_per_class=k,
                           calib_images=sum(len(y) for _, y in calib), fp32_top1=fp32, int8_top1=top1(int8, test)[0],
                           agreement=agreement(int8, model, test), seconds=round(time.perf_counter() - t0, 1))
            row["drop"] = round(row["fp32_top1"] - row["int8_top1"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    ks = sorted({r["calib_per_class"] for r in rows})
    methods = list(dict.fromkeys(r["calibration"] for r in rows))
    head = "| model | FP32 top-1 | " + " | ".join(f"{m}, {k}/class: top-1 (agreement)" for m in methods for k in ks) + " |"
    lines = [head, "|---|---|" + "---|" * (len(ks) * len(methods))]
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = {(r["calibration"], r["calib_per_class"]): r for r in rows if r["model"] == name}
        first = next(iter(mine.values()))
        cells = []
        for m in methods:
            for k in ks:
                r = mine.get((m, k))
                cells.append("-" if r is None else f"{r['int8_top1']:.2f} ({r['agreement']:.1f} %)")
        mark = "" if first["trained"] else " (untrained)"
        lines.append(f"| {name}{mark} | {first['fp32_top1']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carve.files import save_figure

    names = list(dict.fromkeys(r["model"] for r in rows))
    variants = list(dict.fromkeys((r["calibration"], r["calib_per_class"]) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(variants)
    for i, (m, k) in enumerate(variants):
        by = {r["model"]: r for r in rows if (r["calibration"], r["calib_per_class"]) == (m, k)}
        xs = [j + width * (i - (len(variants) - 1) / 2) for j in range(len(names))]
        axes[0].bar(xs, [by[n]["drop"] if n in by else 0 for n in names], width, label=f"{m}, {k}/class")
        axes[1].bar(xs, [by[n]["agreement"] if n in by else 0 for n in names], width, label=f"{m}, {k}/class")
    axes[0].set_ylabel("top-1 lost to INT8 (points)")
    axes[1].set_ylabel("top-1 agreement with FP32 (%)")
    axes[1].axhline(95, color="grey", lw=0.8, ls="--")
    for ax in axes:
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=15)
        ax.legend(fontsize=7)
    fig.suptitle("ONNX Runtime INT8: calibration method and size (Tiny ImageNet, 64 px)")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = shipped_parser(__doc__, MODELS, "calibration and evaluation size (the shards' native size)")
    ap.add_argument("--calibrations", nargs="+", default=["percentile", "entropy", "minmax"],
                    choices=("percentile", "entropy", "minmax"))
    ap.add_argument("--calib-per-class", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--eval-per-class", type=int, default=5, help="held-out images per class")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    calibs = {k: batches(args.data, "train", args.img_size, k) for k in args.calib_per_class}
    test = batches(args.data, "val", args.img_size, args.eval_per_class)
    rows = []
    for name in args.models:
        rows.extend(run_model(name, args, calibs, test))
    text = table(rows)
    print(text)
    write_results("int8_calibration", argv, args, rows, text, sum(len(y) for _, y in test), plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
