"""Detection transfer benchmark: same short CIFAR-10 pretraining, same SSDLite finetune on coco128.

For each backbone: pretrain with ``carve.train.fit`` (same recipe and step budget for all), then
finetune SSDLite on coco128 (fixed split by image id, fixed seed) with ``carve.finetune.detect()``,
and time the detectors' CPU latency interleaved in one process (``carve.latency.compare``).
Also an overfit check: a detector trained on 16 coco128 images should reach a high AP50 on them.

Stages cache their results under ``--out`` so an interrupted run picks up where it stopped:

    python benchmarks/detect_transfer.py                    # everything
    python benchmarks/detect_transfer.py --stage pretrain --models carve_100
    python benchmarks/detect_transfer.py --stage report     # table + JSON + PNG from cached results

Prints a table and writes ``detect_transfer.json`` and ``detect_transfer.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ["carve_100", "mobilenet_v3_large_100", "mobilenet_v2_100", "shufflenet_v2_100"]


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _write(path: Path, data: Any) -> None:
    from carve.files import write_json

    write_json(path, data)


def pretrain(name: str, args: argparse.Namespace) -> Path:
    """Short CIFAR-10 run, identical for every backbone; returns its final weights file."""
    from carve.train import TrainConfig, fit

    out = Path(args.out) / "pretrain" / name
    weights = out / "final.safetensors"
    if weights.is_file() and _json(out / "summary.json"):
        return weights
    cfg = TrainConfig(model=name, data=args.cifar, out_dir=str(out), epochs=1, max_steps=args.pretrain_steps,
                      batch_size=64, lr=0.4, base_batch_size=256, warmup_epochs=0.02, img_size=args.pretrain_size,
                      aug="weak", cutmix_alpha=0.0, mixup_alpha=0.0, val_per_class=args.pretrain_val_per_class,
                      workers=0, seed=0, progress=False, tensorboard=False)
    res = fit(cfg)
    _write(out / "summary.json", dict(model=name, top1=res.final_top1, steps=args.pretrain_steps,
                                      img_size=args.pretrain_size, wall_s=res.wall_s, images_per_s=res.images_per_s))
    return weights


def finetune(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from carve.finetune import DetectConfig, detect

    out = Path(args.out) / "detect" / name
    done = _json(out / "summary.json")
    if done:
        return done
    weights = pretrain(name, args)
    cfg = DetectConfig(backbone=str(weights), head="ssdlite", data=args.coco, out_dir=str(out),
                       val_fraction=0.2, split_seed=0, seed=0, img_size=args.img_size, epochs=args.epochs,
                       batch_size=8, lr=args.lr, warmup_epochs=1.0, grad_clip=10.0, eval_every=args.epochs,
                       progress=False, tensorboard=False)
    res = detect(cfg)
    summary = dict(model=name, AP=res.metrics["AP"], AP50=res.metrics["AP50"], AP75=res.metrics["AP75"],
                   num_train=res.num_train, num_val=res.num_val, epochs=args.epochs, img_size=args.img_size,
                   wall_s=res.wall_s, train_images_per_s=res.images_per_s, checkpoint=str(res.checkpoint),
                   examples_png=str(res.examples_png))
    _write(out / "summary.json", summary)
    return summary


def overfit(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate on the same 16 images: the pipeline must be able to memorise them.

    The backbone starts from random weights, so the check depends on nothing but the detection
    pipeline (readers, transforms, head, loss, evaluation) and runs beside the pretraining."""
    from carve.finetune import DetectConfig, detect, open_dataset

    out = Path(args.out) / "overfit"
    done = _json(out / "summary.json")
    if done:
        return done
    ds = open_dataset(args.coco)
    ids = [r.image_id for r in ds.records if r.boxes][:16]
    cfg = DetectConfig(backbone=args.overfit_model, head="ssdlite", data=args.coco, out_dir=str(out), train_ids=ids,
                       val_ids=ids, img_size=args.overfit_size, epochs=args.overfit_epochs, batch_size=8,
                       lr=args.overfit_lr, warmup_epochs=2.0, grad_clip=10.0, augment="none",
                       eval_every=max(1, args.overfit_epochs // 4), progress=False, tensorboard=False)
    res = detect(cfg)
    summary = dict(model=args.overfit_model, images=len(ids), AP=res.metrics["AP"], AP50=res.metrics["AP50"],
                   epochs=args.overfit_epochs, img_size=args.overfit_size, wall_s=res.wall_s,
                   curve=[dict(epoch=h["epoch"], AP50=h.get("AP50")) for h in res.history if "AP50" in h],
                   examples_png=str(res.examples_png))
    _write(out / "summary.json", summary)
    return summary


def latency(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Detector (SSDLite, 80 classes) latency at batch 1, eager fp32, one thread, interleaved."""
    import torch

    from carve.finetune import build_detector
    from carve.latency import compare
    from carve.latency.protocol import Protocol

    out = Path(args.out) / "latency.json"
    done = _json(out)
    if done and done["names"] == names:
        return done
    torch.manual_seed(0)
    models = [build_detector("ssdlite", n, 80, args.img_size).eval() for n in names]
    cmp = compare(models, names=names, input_size=args.img_size, threads=1,
                  protocol=Protocol(clock="cpu", max_time_s=args.latency_s))
    data = dict(names=names, median_ms=[r.median_ms for r in cmp.results], p10_ms=[r.p10_ms for r in cmp.results],
                p90_ms=[r.p90_ms for r in cmp.results], ratios=cmp.ratios, threads=1, clock="cpu",
                input_size=args.img_size)
    _write(out, data)
    return data


def report(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    rows = []
    lat = _json(out / "latency.json") or {}
    lat_by = dict(zip(lat.get("names", []), zip(lat.get("median_ms", []), lat.get("ratios", []))))
    for n in names:
        pre = _json(out / "pretrain" / n / "summary.json") or {}
        det = _json(out / "detect" / n / "summary.json") or {}
        ms, ratio = lat_by.get(n, (None, None))
        rows.append(dict(model=n, cifar_top1=pre.get("top1"), AP=det.get("AP"), AP50=det.get("AP50"),
                         AP75=det.get("AP75"), latency_ms=ms, latency_ratio=ratio,
                         finetune_s=det.get("wall_s")))
    result = dict(rows=rows, overfit=_json(out / "overfit" / "summary.json"), latency=lat,
                  settings=dict(pretrain_steps=args.pretrain_steps, pretrain_size=args.pretrain_size,
                                finetune_epochs=args.epochs, img_size=args.img_size, lr=args.lr, head="ssdlite",
                                split="coco128, 20% of images by id held out (seed 0)"))
    _write(out / "detect_transfer.json", result)
    fmt = lambda v, s=100, d=1: "-" if v is None else f"{v * s:.{d}f}"  # noqa: E731
    print(f"{'backbone':24s} {'CIFAR top-1':>11s} {'mAP':>6s} {'AP50':>6s} {'AP75':>6s} {'latency ms':>10s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['model']:24s} {fmt(r['cifar_top1'], 1):>11s} {fmt(r['AP'], 100, 2):>6s} {fmt(r['AP50'], 100, 2):>6s} "
              f"{fmt(r['AP75'], 100, 2):>6s} {fmt(r['latency_ms'], 1):>10s} {fmt(r['latency_ratio'], 1, 2):>6s}")
    of = result["overfit"]
    if of:
        print(f"overfit check ({of['model']}, {of['images']} images, {of['epochs']} epochs at {of['img_size']} px): "
              f"AP50 {100 * of['AP50']:.1f}  AP {100 * of['AP']:.1f}  "
              f"curve {[round(100 * c['AP50'], 1) for c in of['curve']]}")
    _plot(rows, out / "detect_transfer.png")
    return result


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r["AP50"] is not None and r["latency_ms"] is not None]
    if not pts:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in pts:
        ax.scatter(r["latency_ms"], 100 * r["AP50"], s=40)
        ax.annotate(r["model"], (r["latency_ms"], 100 * r["AP50"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set(xlabel="SSDLite detector CPU latency, ms (1 thread, eager fp32, CPU clock)",
           ylabel="coco128 val AP50 (%)", title="Detection transfer after the same short CIFAR-10 pretraining")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--stage", default="all", choices=["all", "pretrain", "finetune", "overfit", "latency", "report"])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detect_transfer"))
    p.add_argument("--cifar", default="../shared/data/cifar10")
    p.add_argument("--coco", default="../shared/data/coco128")
    p.add_argument("--pretrain-steps", type=int, default=30)
    p.add_argument("--pretrain-size", type=int, default=64)
    p.add_argument("--pretrain-val-per-class", type=int, default=50)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--img-size", type=int, default=320)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--overfit-model", default="carve_100")
    p.add_argument("--overfit-epochs", type=int, default=50)
    p.add_argument("--overfit-size", type=int, default=192)
    p.add_argument("--overfit-lr", type=float, default=0.05)
    p.add_argument("--latency-s", type=float, default=3.0, help="timing budget per model")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.stage in ("all", "pretrain"):
        for n in args.models:
            pretrain(n, args)
    if args.stage in ("all", "finetune"):
        for n in args.models:
            finetune(n, args)
    if args.stage in ("all", "overfit"):
        overfit(args)
    if args.stage in ("all", "latency"):
        latency(args.models, args)
    if args.stage in ("all", "report"):
        report(args.models, args)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
