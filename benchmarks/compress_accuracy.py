"""INT8 that holds accuracy: FP32 vs plain INT8 vs accuracy-controlled INT8 on Tiny ImageNet (issue 19).

For each model (default: the shipped ``carve:tiny-imagenet`` weights): held-out top-1 of the FP32
model, of plain INT8 in ``--runtime`` (ONNX Runtime static QDQ, or OpenVINO through NNCF; everything
quantized) and of accuracy-controlled INT8 (``carve.compress.controlled_int8``: blocks return to
FP32, most sensitive first, until at most ``--max-drop`` points are lost), and the latency of each
in that runtime at ``--input-size`` (224 px, batch 1; the three variants of a model timed
interleaved in one process, ``carve.compress.step_timing.time_together``). Top-1 is measured
at the shards' native ``--img-size`` (64 px, what the weights were trained at) on the held-out split
(``carve.train.shards``, 10 % of the samples chosen by key); calibration images come from the
training split. The sensitivity table of each model that orders the blocks is ONNX Runtime's for
every runtime (``--table-runtime torch``: a PT2E table); it is written next to the results by the
run of its own flow.

The accuracy-controlled variant is chosen on the same held-out images it is reported on (as
accuracy-aware tools do with their validation set); give ``--control-per-class`` to choose it on
another part of the held-out split than the one reported (``--eval-per-class`` images per class
first, then ``--control-per-class`` more).

    PYTHONPATH=. python benchmarks/compress_accuracy.py [--models mobilenet_v3_large_100 ...]
        [--runtime onnxruntime|openvino|torch] [--table-runtime onnxruntime|torch] [--max-drop 1.0]
        [--eval-per-class 10] [--calib-per-class 2] [--threads 1]

Results go to ``benchmarks/results/compress_accuracy[_RUNTIME][_table_torch].{json,md,png}`` (no
suffix for ONNX Runtime).

Without shipped weights for a model it says so and measures the randomly initialised model, marked
``untrained`` in every output (its top-1 is chance and says nothing about INT8).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

MODELS = ("carve_075", "carve_100", "carve_125", "mobilenet_v3_large_100", "mobilenet_v2_100", "shufflenet_v2_100")
TAG = "carve:tiny-imagenet"
CLASSES = 202


def load(name: str, pretrained: str) -> tuple[torch.nn.Module, bool]:
    """The model with its shipped weights, or (saying so) randomly initialised; and whether trained."""
    from carve.zoo import create_model

    try:
        return create_model(name, pretrained=pretrained).eval(), True
    except Exception as exc:  # no shipped weights: measure the pipeline, not the accuracy
        print(f"{name}: no weights for pretrained={pretrained!r} ({str(exc)[:300]}); measuring the untrained model, "
              f"whose top-1 is chance", file=sys.stderr)
        return create_model(name, num_classes=CLASSES).eval(), False


def batches(data: str, split: str, img_size: int, per_class: int, skip_per_class: int = 0) -> list:
    """``per_class`` images of each class of a shard split as (images, labels) batches held in memory."""
    from torch.utils.data import DataLoader

    from carve.train import build_transforms, collate_skipping
    from carve.train.shards import ShardDataset

    shards = ShardDataset(data, split, build_transforms("none", img_size, False), per_class=per_class + skip_per_class,
                          val_fraction=0.1)
    seen: dict[int, int] = {}
    xs, ys = [], []
    for batch in DataLoader(shards, batch_size=100, collate_fn=collate_skipping):
        for x, y in zip(batch[0], batch[1]):
            k = seen.get(int(y), 0)
            seen[int(y)] = k + 1
            if k >= skip_per_class:
                xs.append(x)
                ys.append(y)
    if not xs:
        raise SystemExit(f"data: {data}: no {split} images (per class {per_class}, skipping {skip_per_class})")
    x, y = torch.stack(xs), torch.stack(ys)
    return [(x[i:i + 100], y[i:i + 100]) for i in range(0, len(y), 100)]




def shipped_parser(doc: str, models: Sequence[str], img_size_help: str) -> argparse.ArgumentParser:
    """The arguments every benchmark of the shipped Tiny ImageNet weights takes: models, weights, data, size."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(models))
    ap.add_argument("--pretrained", default=TAG, help="weights tag or .safetensors file")
    ap.add_argument("--data", default="../shared/data/tiny-imagenet")
    ap.add_argument("--img-size", type=int, default=64, help=img_size_help)
    return ap

def write_results(stem: str, argv: list[str] | None, args: argparse.Namespace, rows: list[dict], text: str,
                  images: int | None, plot_fn) -> None:
    """``benchmarks/results/STEM.{json,md,png}`` of a benchmark over ``images`` held-out images (None: it
    scores none), with its command."""
    from carve.files import write_atomic, write_json

    results = Path(args.results)
    command = f"PYTHONPATH=. python benchmarks/{stem}.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_json(results / f"{stem}.json", dict(command=command, args=vars(args), images=images, rows=rows))
    scored = "" if images is None else f" ({images} held-out images)"
    write_atomic(results / f"{stem}.md", f"`{command}`{scored}\n\n{text}\n")
    plot_fn(rows, results / f"{stem}.png")

def latencies(fp32: torch.nn.Module, int8: list[torch.nn.Module], runtime: str, size: int, threads: int) -> list[float]:
    """Median ms of the FP32 model in ``runtime`` and of each INT8 model (which runs in its own), interleaved."""
    from carve.compress.step_timing import TimedModel, time_together

    timed = [TimedModel(fp32, "compile" if runtime == "torch" else runtime)] + [TimedModel(m, "eager") for m in int8]
    return [round(t.median_ms, 3) for t in time_together(timed, size, 3, threads)]


def run_model(name: str, args: argparse.Namespace, calib: list, test: list, control: list) -> dict:
    from carve.compress import controlled_int8, quantize
    from carve.compress.sensitivity import top1

    model, trained = load(name, args.pretrained)
    out = Path(args.out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fp32 = top1(model, test)[0]
    flow = dict(calibration=args.calibration) if args.runtime == "onnxruntime" else {}
    if args.runtime != "torch":
        flow["threads"] = args.threads
    plain, _ = quantize(model, calib=calib, runtime=args.runtime, out_dir=out / "plain", calib_images=len(calib) * 100,
                        **flow)
    res, _ = controlled_int8(model, calib=calib, eval=control, out_dir=out / "controlled", max_drop=args.max_drop,
                             calib_images=len(calib) * 100, calibration=args.calibration, threads=args.threads,
                             prune_ratios=tuple(args.prune_ratios), runtime=args.runtime,
                             table_runtime=args.table_runtime)
    if res.table is not None and res.table.runtime == args.runtime:  # each flow's table, by the run of that flow
        own = "" if args.runtime == "onnxruntime" else f"{args.runtime}_"
        res.table.write(Path(args.results), stem=f"compress_accuracy_sensitivity_{own}{name}")
    fp32_ms, int8_ms, controlled_ms = latencies(model, [plain, res.model], args.runtime, args.input_size,
                                                args.threads) if args.latency else (None, None, None)
    row = dict(model=name, trained=trained, fp32_top1=fp32, int8_top1=top1(plain, test)[0],
               controlled_top1=top1(res.model, test)[0], kept_float=res.keep_float, met_on_control=res.met,
               variants_tried=len(res.trail), runtime=args.runtime,
               table_runtime=res.table.runtime if res.table else None, fp32_ms=fp32_ms, int8_ms=int8_ms,
               controlled_ms=controlled_ms, seconds=round(time.perf_counter() - t0, 1))
    if args.latency:
        row["int8_speedup"] = round(row["fp32_ms"] / row["int8_ms"], 3)
        row["controlled_speedup"] = round(row["fp32_ms"] / row["controlled_ms"], 3)
    return row


def ms(r: dict, key: str, speedup: str | None = None) -> str:
    """A latency cell: ms (and speed-up), or '-' when not timed."""
    if r.get(key) is None:
        return "-"
    return f"{r[key]:.2f}" + (f" ({r[speedup]:.2f}x)" if speedup else "")


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"| model | FP32 top-1 | INT8 top-1 | controlled INT8 top-1 (max drop {args.max_drop:g}) | kept FP32 | "
             f"FP32 ms | INT8 ms (x) | controlled ms (x) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["trained"] else " (untrained)"
        lines.append(f"| {r['model']}{mark} | {r['fp32_top1']:.2f} | {r['int8_top1']:.2f} | {r['controlled_top1']:.2f} | "
                     f"{', '.join(r['kept_float']) or '-'} | {ms(r, 'fp32_ms')} | {ms(r, 'int8_ms', 'int8_speedup')} | "
                     f"{ms(r, 'controlled_ms', 'controlled_speedup')} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carve.compress.sensitivity import FLOW_NAMES

    names = [r["model"] + ("" if r["trained"] else "\n(untrained)") for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (title, keys) in zip(axes, (("held-out top-1 (%)", ("fp32_top1", "int8_top1", "controlled_top1")),
                                        (f"{FLOW_NAMES[rows[0]['runtime']]} latency (ms)",
                                         ("fp32_ms", "int8_ms", "controlled_ms")))):
        for i, key in enumerate(keys):
            ax.bar([j + 0.27 * (i - 1) for j in range(len(rows))], [r[key] or 0.0 for r in rows], 0.27,
                   label=("FP32", "INT8", "controlled INT8")[i])
        ax.set_xticks(range(len(rows)), names, fontsize=8, rotation=20, ha="right")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = shipped_parser(__doc__, MODELS, "evaluation size (the shards' native size)")
    ap.add_argument("--input-size", type=int, default=224, help="latency input size")
    ap.add_argument("--eval-per-class", type=int, default=10, help="held-out images per class reported")
    ap.add_argument("--control-per-class", type=int, default=0,
                    help="held-out images per class the controlled variant is chosen on (0: the reported ones)")
    ap.add_argument("--calib-per-class", type=int, default=2)
    ap.add_argument("--calibration", default="percentile", choices=("minmax", "percentile", "entropy"))
    ap.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "openvino", "torch"),
                    help="INT8 flow and the runtime all three variants are timed in (torch: PT2E, FP32 compiled)")
    ap.add_argument("--table-runtime", default="onnxruntime", choices=("onnxruntime", "torch"),
                    help="INT8 flow the sensitivity table ordering the blocks is measured in")
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--no-latency", dest="latency", action="store_false", help="top-1 only (e.g. on a busy machine)")
    ap.add_argument("--prune-ratios", type=float, nargs="*", default=[], help="also measure pruning sensitivity")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", default="runs/compress_accuracy")
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    calib = batches(args.data, "train", args.img_size, args.calib_per_class)
    test = batches(args.data, "val", args.img_size, args.eval_per_class)
    control = batches(args.data, "val", args.img_size, args.control_per_class, args.eval_per_class) \
        if args.control_per_class else test
    rows = []
    for name in args.models:
        rows.append(run_model(name, args, calib, test, control))
        print(json.dumps(rows[-1]), flush=True)
    text = table(rows, args)
    print(text)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    command = "PYTHONPATH=. python benchmarks/compress_accuracy.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    stem = "compress_accuracy" + ("" if args.runtime == "onnxruntime" else f"_{args.runtime}")
    if args.table_runtime != "onnxruntime":
        stem += f"_table_{args.table_runtime}"
    (results / f"{stem}.json").write_text(json.dumps(dict(command=command, args=vars(args), rows=rows), indent=2))
    (results / f"{stem}.md").write_text(f"`{command}`\n\n{text}\n")
    plot(rows, results / f"{stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
