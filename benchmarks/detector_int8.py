"""INT8 detectors against their FP32 graphs: COCO AP / AP50 on held-out images, agreement of the boxes
and latency here, in ONNX Runtime (static QDQ), OpenVINO (NNCF), ExecuTorch and LiteRT (PT2E for
XNNPACK), backbone and head INT8 with box decoding and NMS in float (ExecuTorch and LiteRT: NMS
after the program, in Python, and not timed).

Each (checkpoint, runtime) goes through ``carve.finetune.detector_export.export_detector`` with
``int8=True`` once: its report holds PyTorch's, the FP32 graph's and the INT8 graph's mAP on the
same images and both graphs' latency. Rows go to ``benchmarks/results/detector_int8/RUN_TARGET.json``;
the table and the PNG cover every row there. Without a checkpoint, SSDLite is finetuned on raccoon
first (``--epochs``, ``--img-size``, ``--backbone``).

    python benchmarks/detector_int8.py runs/default/finetune/found/best.pt --threads 2 --parity-images 1000
    nice -n 19 python benchmarks/detector_int8.py --epochs 1 --img-size 128 --calib-images 8 \\
        --parity-images 8 --threads 1 --out /tmp/detector_int8_smoke          # smoke test
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from carve.files import save_figure, write_json
from carve.finetune.detector_export import DETECTOR_TARGETS, SUFFIX, DetectorExportConfig, export_detector

RACCOON = Path("../shared/data/raccoon")


def finetune(args: argparse.Namespace, work: Path) -> Path:
    """A raccoon SSDLite with a small budget (the benchmark's own checkpoint when none is given)."""
    from carve.finetune import DetectConfig, detect

    cfg = DetectConfig(backbone=args.backbone, data=str(RACCOON), split="train", val_split="val",
                       out_dir=str(work / "raccoon"), img_size=args.img_size, epochs=args.epochs, batch_size=8,
                       lr=0.05, augment="flip", progress=False, tensorboard=False, examples=0,
                       pretrained=args.pretrained)
    return detect(cfg).checkpoint


def bench(checkpoint: Path, to: str, args: argparse.Namespace, work: Path) -> dict:
    start = time.time()
    out = work / f"{checkpoint.parent.name}_int8{SUFFIX[to]}"
    report = export_detector(DetectorExportConfig(
        model=str(checkpoint), to=to, out=str(out),
        data=args.data, subset=args.subset, parity_images=args.parity_images, threads=args.threads,
        latency=not args.no_latency, protocol=args.protocol, int8=True, calib=args.calib or args.data or
        _run_data(checkpoint), calib_images=args.calib_images))
    m = report["map"]
    return dict(run=checkpoint.parent.name, checkpoint=str(checkpoint), backbone=report["backbone"],
                head=report["head"], to=to, runtime=report["runtime"], input_shape=report["input_shape"],
                size_bytes=report["size_bytes"], quantization=report["quantization"], images=m["images"],
                pytorch=m["pytorch"], fp32=m["fp32_graph"], int8=m["exported"],
                int8_vs_fp32=report["int8_vs_fp32_graph"], latency_int8=report.get("latency"),
                latency_fp32=report.get("latency_fp32"), speedup=report.get("speedup_int8"),
                fingerprint=report.get("fingerprint"), seconds=round(time.time() - start, 1))


def _run_data(checkpoint: Path) -> str:
    from carve.finetune import load_detector

    return str(load_detector(checkpoint)[1]["config"]["data"])


def table(rows: list[dict]) -> str:
    head = (f"{'run':16s} {'backbone':24s} {'runtime':12s} {'imgs':>4s} {'AP fp32':>8s} {'AP int8':>8s} "
            f"{'AP50 fp32':>9s} {'AP50 int8':>9s} {'IoU':>5s} {'ms fp32':>8s} {'ms int8':>8s} {'speed-up':>8s}")
    lines = [head]
    nan = float("nan")
    for r in rows:
        lf, li = r["latency_fp32"], r["latency_int8"]
        lines.append(f"{r['run']:16s} {r['backbone']:24s} {r['runtime']:12s} {r['images']:4d} "
                     f"{100 * r['fp32']['AP']:8.2f} {100 * r['int8']['AP']:8.2f} {100 * r['fp32']['AP50']:9.2f} "
                     f"{100 * r['int8']['AP50']:9.2f} {r['int8_vs_fp32']['mean_iou']:5.3f} "
                     f"{lf['median_ms'] if lf else nan:8.2f} {li['median_ms'] if li else nan:8.2f} "
                     f"{r['speedup'] or nan:7.2f}x")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{r['run']}\n{r['runtime']}" for r in rows]
    xs = range(len(rows))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(rows) + 3), 4.2))
    ax.bar([x - 0.2 for x in xs], [100 * r["fp32"]["AP50"] for r in rows], 0.4, label="FP32 graph")
    ax.bar([x + 0.2 for x in xs], [100 * r["int8"]["AP50"] for r in rows], 0.4, label="INT8 graph")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set(ylabel="COCO AP50 (%)", title="same held-out images")
    ax.legend(fontsize=8)
    bx.bar([x - 0.2 for x in xs], [r["latency_fp32"]["median_ms"] if r["latency_fp32"] else 0 for r in rows], 0.4,
           label="FP32")
    bx.bar([x + 0.2 for x in xs], [r["latency_int8"]["median_ms"] if r["latency_int8"] else 0 for r in rows], 0.4,
           label="INT8")
    bx.set_xticks(list(xs), names, fontsize=8)
    bx.set(ylabel="ms per call (median; NMS included in ONNX Runtime and OpenVINO)", title="latency here")
    bx.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="*", type=Path, help="last.pt / best.pt of carve finetune detect runs "
                                                            "(none: finetune SSDLite on raccoon first)")
    p.add_argument("--to", nargs="+", default=["onnx", "openvino"], choices=list(DETECTOR_TARGETS))
    p.add_argument("--data", default=None, help="dataset of the mAP check (default: each run's own)")
    p.add_argument("--subset", default="val", choices=["val", "all"])
    p.add_argument("--calib", default=None, help="calibration dataset (default: --data, else each run's own)")
    p.add_argument("--calib-images", type=int, default=300)
    p.add_argument("--parity-images", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--protocol", default="quick", choices=["quick", "full"])
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--backbone", default="carve_100", help="without a checkpoint: the backbone finetuned")
    p.add_argument("--pretrained", default="carve:tiny-imagenet",
                   help="without a checkpoint: DetectConfig.pretrained (true, false, a tag or a weights file)")
    p.add_argument("--epochs", type=int, default=10, help="without a checkpoint: finetuning epochs")
    p.add_argument("--img-size", type=int, default=320, help="without a checkpoint: input size")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/detector_int8"))
    args = p.parse_args(argv)
    args.pretrained = {"true": True, "false": False}.get(args.pretrained.lower(), args.pretrained)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="carve_detector_int8_") as tmp:
        checkpoints = args.checkpoints or [finetune(args, Path(tmp))]
        for checkpoint in checkpoints:
            for to in args.to:
                row = bench(checkpoint, to, args, Path(tmp))
                write_json(args.out / f"{row['run']}_{to}.json", row)
                print(f"{row['run']} -> {to} INT8: {row['seconds']} s", flush=True)
    rows = [json.loads(f.read_text()) for f in sorted(args.out.glob("*.json"))]
    print(table(rows))
    plot(rows, args.out / "detector_int8.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
