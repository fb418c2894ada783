"""Train the carve supernet on the Tiny ImageNet shards (sandwich rule, in-place distillation) and ship it.

    python benchmarks/supernet_tiny_imagenet.py [--space carve] [--epochs 30] [--random-subnets 2] [--seed 0]
        [--init-from carve_100@carve:tiny-imagenet]

Trains ``carve.train.train_supernet`` at the shards' native 64 px (resumable: re-running continues
from the run's last checkpoint), then scores sub-networks with inherited weights after BatchNorm
re-estimation on 50 training batches: the largest, the smallest, the zoo's carve_075/100/125 and
a few random ones, on the whole held-out split (10 % of the shards' samples, chosen by key). The
supernet ships as fp16 safetensors in ``carve/weights/`` (``carve_supernet`` under
``carve:tiny-imagenet``, the space in its manifest record; ``carve.zoo.load_supernet`` reads it).
A table, JSON and a PNG (held-out top-1 against MACs at 224 px) go to ``--results``.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import time
from pathlib import Path

import torch

from carve.files import save_figure, write_json
from carve.train import SupernetTrainConfig, calibration_loader, eval_loader, train_supernet
from carve.train.supernet_training import evaluate_subnetworks
from carve.zoo import create_model, get_entry, profile
from carve.zoo.supernet import SHIPPED_NAME, load_supernet

TAG = "carve:tiny-imagenet"
REPO = Path(__file__).resolve().parents[1]
ZOO = ("carve_075", "carve_100", "carve_125")


def recipe(args: argparse.Namespace) -> dict:
    """The supernet recipe (SupernetTrainConfig fields)."""
    return dict(space=args.space, data=args.data, epochs=args.epochs, img_size=args.img_size, batch_size=args.batch_size, lr=args.lr,
                base_batch_size=256, momentum=0.9, weight_decay=5e-5, warmup_epochs=args.warmup_epochs, label_smoothing=0.1,
                aug="weak", random_subnets=args.random_subnets, kd_temperature=1.0, resolutions=tuple(args.resolutions),
                bn_recalibration=20, val_fraction=0.1, eval_every=args.eval_every, workers=args.workers,
                seed=args.seed, init_from=args.init_from, max_steps=args.max_steps, device=args.device,
                amp=args.amp, train_per_class=args.train_per_class, val_per_class=args.val_per_class, progress=False)


def score(supernet: torch.nn.Module, args: argparse.Namespace) -> list[dict]:
    """Held-out top-1 (inherited weights, BN re-estimated) and MACs at 224 px of the reported sub-networks."""
    device = next(supernet.parameters()).device
    calib = calibration_loader(args.data, args.img_size, 128, 50, args.train_per_class, args.seed)
    held_out = eval_loader(args.data, args.img_size, 256, args.val_per_class, args.workers)
    specs = dict(largest=supernet.largest(), smallest=supernet.smallest())
    specs.update({name: get_entry(name).spec() for name in ZOO})
    rng = random.Random(args.seed)
    specs.update({f"random_{i}": supernet.sample(rng) for i in range(args.random_eval)})
    top1 = evaluate_subnetworks(supernet, {k: supernet.fit_spec(s) for k, s in specs.items()}, calib, held_out, device)
    rows = []
    for name, spec in specs.items():
        prof = profile(create_model(supernet.fit_spec(spec)), 224)
        rows.append(dict(subnet=name, top1=round(top1[name], 2), macs_m=round(prof.macs / 1e6, 1),
                         params_m=round(prof.params / 1e6, 3), spec=supernet.fit_spec(spec).to_dict()))
    return rows


def top1_500(supernet: torch.nn.Module, data: str, seed: int = 0) -> float:
    """The largest sub-network's top-1 on the first 500 held-out images, BatchNorm re-estimated on 10
    batches of 64 training images: the manifest's check figure (tests/zoo/test_shipped.py repeats it)."""
    from torch.utils.data import DataLoader

    from carve.train import build_transforms, collate_skipping
    from carve.train.shards import ShardDataset

    calib = calibration_loader(data, 64, 64, 10, 0, seed)
    held_out = DataLoader(ShardDataset(data, "val", build_transforms("none", 64, False), val_fraction=0.1, limit=500),
                          batch_size=250, collate_fn=collate_skipping)
    device = next(supernet.parameters()).device
    return round(evaluate_subnetworks(supernet, dict(largest=supernet.largest()), calib, held_out, device)["largest"], 2)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for r in rows:
        ax.scatter(r["macs_m"], r["top1"], s=30, c="C1" if r["subnet"] in ZOO else "C0")
        ax.annotate(r["subnet"], (r["macs_m"], r["top1"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="MACs at 224 px (M)", ylabel="held-out top-1 (%), inherited weights",
           title="carve supernet sub-networks, Tiny ImageNet 64 px")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/tiny-imagenet")
    p.add_argument("--space", default="carve", help="built-in supernet space (carve, carve_compact) or a space file")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=0, help="smoke runs: cap the optimizer steps")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--resolutions", type=int, nargs="*", default=[48, 56, 64])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.4, help="per 256 images (scaled to the batch)")
    p.add_argument("--warmup-epochs", type=float, default=2.0)
    p.add_argument("--random-subnets", type=int, default=2)
    p.add_argument("--init-from", default=None, help="NAME@TAG or weights file implanted before training")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--random-eval", type=int, default=6, help="random sub-networks scored at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=0, help="smoke runs: the first N images per class")
    p.add_argument("--val-per-class", type=int, default=0, help="smoke runs: the first N held-out images per class")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="none")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/supernet")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--no-ship", dest="ship", action="store_false", help="train and report only")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/supernet_tiny_imagenet.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    out = Path(args.out)
    cfg = SupernetTrainConfig(out_dir=str(out), resume=(out / "last.pt").is_file(), **recipe(args))
    t0 = time.perf_counter()
    def report(row: dict) -> None:
        big, small = row.get("top1_largest", float("nan")), row.get("top1_smallest", float("nan"))
        print(f"epoch {row['epoch']}/{args.epochs}: loss {row['train_loss']:.3f} (largest {row['loss_largest']:.3f}) "
              f"top-1 largest {big:.2f} smallest {small:.2f} {row['images_per_s']:.0f} img/s", flush=True)

    result = train_supernet(cfg, on_epoch=report)
    train_s = round(sum(h["epoch_s"] for h in result.history), 1)
    supernet = load_supernet(result.final_path).to(next(result.supernet.parameters()).device)
    rows = score(supernet, args)
    print(f"\n{'sub-network':16s} {'top-1':>6s} {'MACs 224 (M)':>12s} {'params (M)':>10s}")
    for r in rows:
        print(f"{r['subnet']:16s} {r['top1']:6.2f} {r['macs_m']:12.1f} {r['params_m']:10.3f}")
    if args.ship:
        from carve.zoo.shipped import publish

        by = {r["subnet"]: r for r in rows}
        rec = publish(supernet.cpu(), SHIPPED_NAME, TAG, dict(
            dataset="tiny-imagenet-202", space=supernet.space.to_dict(), top1=by["largest"]["top1"],
            top1_smallest=by["smallest"]["top1"], subnets={k: v["top1"] for k, v in by.items()},
            held_out=dict(val_fraction=0.1, rule="sha1(key) < fraction (carve.train.shards.held_out)"),
            eval=dict(input_size=args.img_size, crop_pct=1.0, interpolation="bilinear",
                      mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], bn_recalibration_batches=50),
            recipe=cfg.to_dict(), command=command, seed=args.seed, train_s=train_s,
            top1_500=top1_500(supernet, args.data, args.seed),
            metrics=dict(top1_largest=by["largest"]["top1"], top1_smallest=by["smallest"]["top1"])))
        print(f"shipped {rec['file']} (sha256 {rec['sha256'][:12]}...)")
    res = Path(args.results)
    write_json(res / "supernet_tiny_imagenet.json", dict(command=command, recipe=recipe(args), train_s=train_s,
                                                         wall_s=round(time.perf_counter() - t0, 1),
                                                         history=result.history, subnets=rows))
    plot(rows, res / "supernet_tiny_imagenet.png")
    print(f"wrote {res / 'supernet_tiny_imagenet.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
