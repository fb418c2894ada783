"""Detectors trained by ``carve finetune detect`` shipped as ONNX / OpenVINO IR: COCO mAP in the runtime
against PyTorch's on the run's validation images, detection-by-detection parity, and latency here.

Each checkpoint goes through ``carve.finetune.detector_export.export_detector`` (box decoding and
NMS inside the graph) once per target. Each (checkpoint, target) row is written to
``benchmarks/results/detector_export/RUN_TARGET.json``; the table and the PNG cover every row
there, so rows measured in separate invocations add up.

    python benchmarks/detector_export.py runs/default/finetune/found/best.pt runs/default/finetune/hand_designed/best.pt
    python benchmarks/detector_export.py CKPT --to onnx openvino --threads 2 --parity-images 1000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from carve.files import save_figure, write_json
from carve.finetune.detector_export import DetectorExportConfig, export_detector


def bench(checkpoint: Path, to: str, args: argparse.Namespace, work: Path) -> dict:
    start = time.time()
    report = export_detector(DetectorExportConfig(
        model=str(checkpoint), to=to, out=str(work / f"{checkpoint.parent.name}{'.onnx' if to == 'onnx' else '.xml'}"),
        data=args.data, subset=args.subset, parity_images=args.parity_images, threads=args.threads,
        latency=not args.no_latency, protocol=args.protocol))
    return dict(run=checkpoint.parent.name, checkpoint=str(checkpoint), backbone=report["backbone"],
                head=report["head"], to=to, runtime=report["runtime"], input_shape=report["input_shape"],
                size_bytes=report["size_bytes"], map=report["map"], parity=report["parity"],
                latency=report.get("latency"), fingerprint=report.get("fingerprint"),
                seconds=round(time.time() - start, 1))


def table(rows: list[dict]) -> str:
    head = (f"{'run':16s} {'backbone':24s} {'runtime':12s} {'imgs':>4s} {'AP torch':>8s} {'AP rt':>8s} {'dAP':>8s} "
            f"{'AP50 torch':>10s} {'AP50 rt':>8s} {'labels':>6s} {'box px':>8s} {'ms':>7s}")
    lines = [head]
    for r in rows:
        m, p, lat = r["map"], r["parity"], r["latency"]
        lines.append(f"{r['run']:16s} {r['backbone']:24s} {r['runtime']:12s} {m['images']:4d} "
                     f"{100 * m['pytorch']['AP']:8.2f} {100 * m['exported']['AP']:8.2f} "
                     f"{100 * m['difference']['AP']:+8.3f} {100 * m['pytorch']['AP50']:10.2f} "
                     f"{100 * m['exported']['AP50']:8.2f} {p['top_label_agreement']:6.1%} "
                     f"{p['max_box_diff_px']:8.1e} {lat['median_ms'] if lat else float('nan'):7.2f}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r['run']}\n{r['runtime']}" for r in rows]
    xs = range(len(rows))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(rows) + 3), 4.2))
    ax.bar([x - 0.2 for x in xs], [100 * r["map"]["pytorch"]["AP50"] for r in rows], 0.4, label="PyTorch")
    ax.bar([x + 0.2 for x in xs], [100 * r["map"]["exported"]["AP50"] for r in rows], 0.4, label="exported")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set(ylabel="COCO AP50 (%)", title="same images, PyTorch vs runtime")
    ax.legend(fontsize=8)
    bx.bar(list(xs), [r["latency"]["median_ms"] if r["latency"] else 0 for r in rows])
    bx.set_xticks(list(xs), names, fontsize=8)
    bx.set(ylabel="ms per image (median, NMS included)", title="latency here")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path, help="last.pt / best.pt of carve finetune detect runs")
    p.add_argument("--to", nargs="+", default=["onnx", "openvino"], choices=["onnx", "openvino"])
    p.add_argument("--data", default=None, help="dataset (default: each run's own)")
    p.add_argument("--subset", default="val", choices=["val", "all"])
    p.add_argument("--parity-images", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--protocol", default="quick", choices=["quick", "full"])
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/detector_export"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="carve_detector_export_") as tmp:
        for checkpoint in args.checkpoints:
            for to in args.to:
                row = bench(checkpoint, to, args, Path(tmp))
                write_json(args.out / f"{row['run']}_{to}.json", row)
                print(f"{row['run']} -> {to}: {row['seconds']} s", flush=True)
    rows = [json.loads(f.read_text()) for f in sorted(args.out.glob("*.json"))]
    print(table(rows))
    plot(rows, args.out / "detector_export.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
