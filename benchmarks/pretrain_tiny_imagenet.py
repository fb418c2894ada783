"""Pretrain zoo models on the Tiny ImageNet shards with one recipe and ship their weights.

    python benchmarks/pretrain_tiny_imagenet.py [--models carve_100 ...] [--epochs 30] [--seed 0]

The deployed networks (the zoo's strides, no small-input surgery) train at the shards' native
64 px through ``carve.train.fit``, one model at a time, resumable (re-running continues the model in
progress from its last checkpoint and skips finished ones; ``--replace`` ships over a file the manifest
already holds). Each finished model is evaluated on
the whole held-out split (10 % of the shards' samples, chosen by key) and shipped as fp16
safetensors in ``carve/weights/`` with a manifest record (sha256, spec hash, recipe, command,
seed, held-out top-1/top-5, top-1 of the shipped file on the first 500 held-out images,
evaluation preprocessing, training time). At the end every model's ONNX Runtime latency at
224 px is measured one model at a time, and a table, JSON and a PNG go to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from carve.files import write_json
from carve.train import TrainConfig, evaluate, fit
from carve.train.shards import ShardDataset
from carve.zoo import create_model

MODELS = ("carve_075", "carve_100", "carve_125", "mobilenet_v3_large_100", "mobilenet_v2_100", "shufflenet_v2_100")
TAG = "carve:tiny-imagenet"
REPO = Path(__file__).resolve().parents[1]


def recipe(args: argparse.Namespace) -> dict:
    """The one recipe every model trains with (TrainConfig fields)."""
    return dict(data=args.data, epochs=args.epochs, img_size=args.img_size, batch_size=128, lr=args.lr,
                base_batch_size=256, momentum=0.9, weight_decay=5e-5, warmup_epochs=2.0, label_smoothing=0.1,
                cutmix_alpha=0.0, mixup_alpha=0.0, mix_prob=0.0, aug="weak", bn_recalibration=50, val_fraction=0.1,
                eval_every=args.eval_every, workers=1, seed=args.seed, progress=False, tensorboard=False,
                train_per_class=args.train_per_class, val_per_class=args.val_per_class)


def held_out_500(model: torch.nn.Module, args: argparse.Namespace) -> float:
    """Top-1 on the first 500 held-out images (what the shipped-weights test re-checks)."""
    from torch.utils.data import DataLoader

    from carve.train import build_transforms, collate_skipping

    shards = ShardDataset(args.data, "val", build_transforms("none", args.img_size, False), val_fraction=0.1,
                          limit=500)
    loader = DataLoader(shards, batch_size=250, collate_fn=collate_skipping)
    return float(evaluate(model, loader, device="cpu")["top1"])


def earlier_results(args: argparse.Namespace) -> dict[str, dict]:
    """Rows of the committed results file that were trained with this recipe, by model."""
    path = Path(args.results) / "pretrain_tiny_imagenet.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {r["model"]: r for r in data.get("models", [])} if data.get("recipe") == recipe(args) else {}


def train_and_ship(name: str, args: argparse.Namespace, command: str, earlier: dict[str, dict]) -> dict:
    from carve.zoo.shipped import manifest, publish

    out = Path(args.out) / name
    cfg = TrainConfig(model=name, out_dir=str(out), resume=(out / "last.pt").is_file(), **recipe(args))
    done = out / "done.json"
    shipped = manifest().get(TAG, {}).get(name)
    if done.is_file() and json.loads(done.read_text()).get("recipe") == _recipe_record(cfg):
        print(f"{name}: finished earlier ({done})", flush=True)
        result = json.loads(done.read_text())
    elif not args.replace and shipped is not None and shipped.get("recipe") == _recipe_record(cfg) and name in earlier:
        print(f"{name}: shipped earlier with this recipe (carve/weights/{shipped['file']})", flush=True)
        return earlier[name]
    else:
        t0 = time.perf_counter()
        res = fit(cfg, on_epoch=lambda row: print(f"{name}: epoch {row['epoch']}/{args.epochs} loss "
                                                    f"{row['train_loss']:.3f} top-1 {row.get('top1', float('nan')):.2f} "
                                                    f"{row['images_per_s']:.0f} img/s", flush=True))
        last = res.history[-1]
        result = dict(model=name, top1=round(res.final_top1, 2), top5=round(last["top5"], 2),
                      train_s=round(sum(h["epoch_s"] for h in res.history), 1), wall_s=round(time.perf_counter() - t0, 1),
                      images_per_s=round(res.images_per_s, 1), history=res.history, recipe=_recipe_record(cfg))
        write_json(done, result)
    if args.ship and (args.replace or shipped is None or shipped.get("recipe") != _recipe_record(cfg)):
        model = create_model(out / "final.safetensors").eval()
        fp16 = create_model(out / "final.safetensors").eval().half().float()  # what the fp16 file holds
        rec = publish(model, name, TAG, dict(
            dataset="tiny-imagenet-202", top1=result["top1"], top5=result["top5"], top1_500=held_out_500(fp16, args),
            held_out=dict(val_fraction=0.1, rule="sha1(key) < fraction (carve.train.shards.held_out)"),
            eval=dict(input_size=args.img_size, crop_pct=1.0, interpolation="bilinear",
                      mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            recipe=_recipe_record(cfg), command=command, seed=args.seed, train_s=result["train_s"],
            environment=environment(args), metrics=dict(top1=result["top1"], top5=result["top5"])))
        print(f"{name}: shipped {rec['file']} (sha256 {rec['sha256'][:12]}..., top-1 {rec['top1']:.2f}, "
              f"first 500 held-out {rec['top1_500']:.2f})", flush=True)
    return result


def regenerate(args: argparse.Namespace, command: str) -> int:
    """Train each model again with the shipped recipe and compare its held-out top-1 with the manifest's."""
    from carve.zoo.shipped import record

    args.ship = False
    rows = []
    for name in args.models:
        shipped = record(TAG, name)
        if shipped.get("recipe") != _recipe_record(TrainConfig(model=name, out_dir=args.out, **recipe(args))):
            raise SystemExit(f"{name}: the recipe of this command differs from the shipped file's "
                             f"(carve/weights/manifest.json); pass the shipped recipe's flags")
        result = train_and_ship(name, args, command, {})
        diff = round(result["top1"] - shipped["top1"], 2)
        rows.append(dict(model=name, shipped_top1=shipped["top1"], regenerated_top1=result["top1"], diff=diff,
                         within_1_point=abs(diff) <= 1.0, train_s=result["train_s"], shipped_command=shipped["command"],
                         shipped_environment=shipped.get("environment"), environment=environment(args)))
        print(f"{name}: shipped {shipped['top1']:.2f}, regenerated {result['top1']:.2f} ({diff:+.2f} points)", flush=True)
    print(f"\n{'model':26s} {'shipped':>8s} {'again':>8s} {'diff':>6s}")
    for r in rows:
        print(f"{r['model']:26s} {r['shipped_top1']:8.2f} {r['regenerated_top1']:8.2f} {r['diff']:+6.2f}")
    path = Path(args.results) / "pretrain_regenerate.json"
    for r in rows:
        r["command"] = command
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    kept = [dict(r, command=r.get("command", earlier.get("command"))) for r in earlier.get("rows", [])
            if r["model"] not in args.models]  # other models' regenerations, each with the command that ran it
    write_json(path, dict(recipe=recipe(args), rows=sorted(kept + rows, key=lambda r: r["model"])))
    return 0 if all(r["within_1_point"] for r in rows) else 1


def environment(args: argparse.Namespace) -> dict:
    """Where a model trained (CPU and its instruction sets, torch, threads): the same seed and recipe
    give the same weights only on the same kernels."""
    from carve.latency.fingerprint import device_fingerprint

    return {k: v for k, v in device_fingerprint(threads=args.threads).items() if k in ("cpu", "cpu_flags", "python", "torch", "threads")}


def _recipe_record(cfg: TrainConfig) -> dict:
    rec = cfg.to_dict()
    for key in ("model", "out_dir", "resume", "progress", "tensorboard", "workers"):
        rec.pop(key, None)
    return rec


def ort_latency(names: list[str], threads: int) -> dict[str, float]:
    from carve.latency import measure

    return {n: round(measure(create_model(n, num_classes=202), runtime="onnxruntime", input_size=224,
                             threads=threads, cache=False).median_ms, 3) for n in names}


def plot(results: list[dict], latency: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        pts = [(h["epoch"], h["train_loss"]) for h in r["history"]]
        a.plot(*zip(*pts), "o-", ms=3, label=f"{r['model']} ({r['top1']:.1f} %)")
        b.scatter(latency[r["model"]], r["top1"], s=40)
        b.annotate(r["model"], (latency[r["model"]], r["top1"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    a.set(xlabel="epoch", ylabel="training loss", title="Tiny ImageNet (202 classes, 64 px); legend: held-out top-1")
    b.set(xlabel="ONNX Runtime latency at 224 px (ms, batch 1)", ylabel="held-out top-1 (%)",
          title="Accuracy vs deploy latency")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--data", default="../shared/data/tiny-imagenet")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.4, help="per 256 images (scaled to the batch of 128)")
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=0, help="smoke runs: the first N images per class")
    p.add_argument("--val-per-class", type=int, default=0, help="smoke runs: the first N held-out images per class")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/pretrain")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--no-ship", dest="ship", action="store_false", help="train and report only")
    p.add_argument("--no-latency", dest="latency", action="store_false")
    p.add_argument("--replace", action="store_true",
                   help="ship over a file the manifest already holds for this recipe (from the run finished in --out, "
                        "or a new one): for a shipped file that its command no longer regenerates")
    p.add_argument("--regenerate", action="store_true",
                   help="train the models again from scratch (in --out, nothing shipped or reused) and compare "
                        "each held-out top-1 with the shipped file's (pretrain_regenerate.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/pretrain_tiny_imagenet.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.regenerate:
        return regenerate(args, command)
    earlier = earlier_results(args)
    results = [train_and_ship(name, args, command, earlier) for name in args.models]
    results += [r for name, r in earlier.items() if name not in args.models]  # the table keeps every shipped model
    names = [r["model"] for r in results]
    latency = ort_latency(names, args.threads) if args.latency else {n: float("nan") for n in names}
    print(f"\n{'model':26s} {'top-1':>6s} {'top-5':>6s} {'ORT 224 px (ms)':>16s} {'train (min)':>11s}")
    for r in results:
        print(f"{r['model']:26s} {r['top1']:6.2f} {r['top5']:6.2f} {latency[r['model']]:16.3f} {r['train_s'] / 60:11.1f}")
    out = Path(args.results)
    write_json(out / "pretrain_tiny_imagenet.json", dict(
        command=command, recipe=recipe(args), latency_ms_ort_224=latency,
        models=[{k: v for k, v in r.items() if k != "recipe"} for r in results]))
    plot(results, latency, out / "pretrain_tiny_imagenet.png")
    print(f"wrote {out / 'pretrain_tiny_imagenet.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
