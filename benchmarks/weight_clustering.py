"""Weight clustering (palettisation): stored size against held-out top-1 on Tiny ImageNet (issue 19).

For each model (default: the shipped ``carve:tiny-imagenet`` weights of carve_100 and
mobilenet_v3_large_100) and each ``--bits`` (8, 6, 4): every convolution/linear weight clustered
to 2^bits values by ``carve.compress.cluster`` (coremltools k-means, BatchNorm folded first; one
palette per tensor, or per ``--group-size`` output channels as well when given). Reported per
variant: held-out top-1 at the shards' native ``--img-size`` (64 px, what the weights were trained
at; the held-out split of ``carve.train.shards``, 10 % of the samples chosen by key), top-1
agreement with the FP32 model, the size as indices + FP32 palettes (``clustered_size``) and, with
``--coreml`` (default), the weight file of the Core ML package written from it (FP32 and FP16
packages for reference), each package checked against its model by reading it back. The model
computes in float either way: clustering saves storage and download, not time on this CPU.

    PYTHONPATH=. python benchmarks/weight_clustering.py [--models carve_100 ...] [--bits 8 6 4]
        [--group-size 16] [--eval-per-class 10] [--no-coreml]

Without shipped weights for a model it says so and measures the randomly initialised model, marked
``untrained`` in every output (its top-1 is chance and says nothing about clustering).
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

from compress_accuracy import batches, load, shipped_parser, write_results  # noqa: E402  (the shipped weights and held-out shards, read alike)

MODELS = ("carve_100", "mobilenet_v3_large_100")


def agreement(a: torch.nn.Module, b: torch.nn.Module, data: list) -> float:
    """Percent of images on which ``a`` and ``b`` pick the same class."""
    same = total = 0
    with torch.no_grad():
        for x, _ in data:
            same += int((a(x).argmax(1) == b(x).argmax(1)).sum())
            total += len(x)
    return 100.0 * same / total


def coreml_bytes(model: torch.nn.Module, size: int, fp16: bool = False) -> tuple[int, dict]:
    """Weight-file bytes of the Core ML package of ``model`` and its read-back check."""
    from carve.compress.coreml_check import check_mlpackage
    from carve.latency.coreml_runtime import export_mlpackage

    with tempfile.TemporaryDirectory(prefix="carve_cluster_") as tmp:
        path = export_mlpackage(model, Path(tmp) / "m.mlpackage", size, fp16=fp16)
        check = check_mlpackage(model, path, size, tolerance=2e-3 if fp16 else 1e-4)
    if not check.ok:
        raise SystemExit(f"Core ML package does not match its model: {check.problems}")
    return check.weight_file_bytes, dict(ops=check.ops, palettised=check.palettised_tensors,
                                         max_palette=check.max_palette_size)


def run_model(name: str, args: argparse.Namespace, test: list) -> list[dict]:
    from carve.compress import fold
    from carve.compress.clustering import cluster, clustered_size
    from carve.compress.sensitivity import top1

    model, trained = load(name, args.pretrained)
    folded = fold(model)[0]
    fp32_top1 = top1(folded, test)[0]
    fp32_bytes = clustered_size(folded).float_bytes
    rows = [dict(model=name, trained=trained, variant="fp32", bits=32, group_size=0, top1=fp32_top1,
                 agreement=100.0, packed_bytes=fp32_bytes, ratio=1.0, seconds=0.0)]
    if args.coreml:
        rows[0]["coreml_bytes"], _ = coreml_bytes(folded, args.input_size)
        fp16 = dict(rows[0], variant="fp16 (Core ML)", bits=16, packed_bytes=fp32_bytes // 2, ratio=2.0)
        fp16["coreml_bytes"], _ = coreml_bytes(folded, args.input_size, fp16=True)
        rows.append(fp16)  # top-1 and agreement of FP16 not measured here: Core ML does not predict on Linux
        fp16["top1"] = fp16["agreement"] = None
    for group in [0] + ([args.group_size] if args.group_size else []):
        for bits in args.bits:
            t0 = time.perf_counter()
            clustered, _ = cluster(model, bits=bits, group_size=group)
            seconds = round(time.perf_counter() - t0, 1)
            size = clustered_size(clustered)
            row = dict(model=name, trained=trained, variant=f"{bits}-bit" + (f" per {group} ch" if group else ""),
                       bits=bits, group_size=group, top1=top1(clustered, test)[0],
                       agreement=agreement(clustered, folded, test), packed_bytes=size.packed_bytes,
                       ratio=round(size.ratio, 3), kept_float=list(clustered.cluster_skipped), seconds=seconds)
            if args.coreml:
                row["coreml_bytes"], row["coreml"] = coreml_bytes(clustered, args.input_size)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | variant | held-out top-1 | agreement with FP32 | indices + palettes MB | x smaller | "
             "Core ML weights MB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["trained"] else " (untrained)"
        top1 = "-" if r["top1"] is None else f"{r['top1']:.2f}"
        agree = "-" if r["agreement"] is None else f"{r['agreement']:.1f} %"
        core = f"{r['coreml_bytes'] / 1e6:.3f}" if "coreml_bytes" in r else "-"
        lines.append(f"| {r['model']}{mark} | {r['variant']} | {top1} | {agree} | {r['packed_bytes'] / 1e6:.3f} | "
                     f"{r['ratio']:.2f} | {core} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from carve.files import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name and r["top1"] is not None]
        for group in dict.fromkeys(r["group_size"] for r in mine if r["bits"] < 32):
            pts = [r for r in mine if r["bits"] == 32 or r["group_size"] == group]
            label = name + ("" if mine[0]["trained"] else " (untrained)") + (f", per {group} ch" if group else "")
            ax.plot([r["packed_bytes"] / 1e6 for r in pts], [r["top1"] for r in pts], "o-", label=label)
            for r in pts:
                ax.annotate(r["variant"].split(" ")[0], (r["packed_bytes"] / 1e6, r["top1"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("stored weights (MB, indices + palettes; log scale)")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title("Weight clustering: size vs accuracy (Tiny ImageNet)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = shipped_parser(__doc__, MODELS, "evaluation size (the shards' native size)")
    ap.add_argument("--input-size", type=int, default=224, help="input size of the Core ML packages")
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    ap.add_argument("--group-size", type=int, default=0, help="also one palette per this many output channels")
    ap.add_argument("--eval-per-class", type=int, default=10, help="held-out images per class")
    ap.add_argument("--coreml", action=argparse.BooleanOptionalAction, default=True,
                    help="write each variant as a Core ML package and report its weight file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default="benchmarks/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    test = batches(args.data, "val", args.img_size, args.eval_per_class)
    rows = []
    for name in args.models:
        rows.extend(run_model(name, args, test))
    text = table(rows)
    print(text)
    write_results("weight_clustering", argv, args, rows, text, sum(len(y) for _, y in test), plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
