"""Train zoo models (and the torchvision twin) on real CIFAR-10 for a fixed short CPU budget, and
compare our loop's throughput with a plain torchvision-reference loop on the same model and batch.

    PYTHONPATH=. python benchmarks/train_cifar10.py [--quick] [--data ../shared/data/cifar10]

Part A: ``carve.train.fit`` trains each model for the same budget (``--epochs`` over
``--train-per-class`` images per class) and reports top-1, images/s and wall time. Part B:
``--rounds`` rounds alternate our loop and the plain loop (``--steps`` steps each, same model,
batch, data, transforms and recipe) in this process and report the per-round throughput ratio,
so the machine's varying load hits both alike. Writes a table, JSON and a PNG to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset, default_collate

from carve.train import TrainConfig, build_transforms, find_split, fit
from carve.zoo import create_model

TV_PREFIX = "tv:"


def torchvision_twin(name: str, num_classes: int, small_input: int) -> nn.Module:
    """torchvision's model with its first ``small_input`` stride-2 convs set to stride 1 (stem first)."""
    import torchvision

    model = torchvision.models.get_model(name, num_classes=num_classes)
    left = small_input
    for m in model.modules():
        if left and isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            m.stride, left = (1, 1), left - 1
    return model


def make_model(name: str, num_classes: int, small_input: int) -> nn.Module:
    if name.startswith(TV_PREFIX):
        return torchvision_twin(name[len(TV_PREFIX):], num_classes, small_input)
    return create_model(name, num_classes=num_classes, small_input=small_input)


def base_config(args: argparse.Namespace, model: nn.Module, out_dir: str, **kw) -> TrainConfig:
    cfg = dict(model=model, data=args.data, out_dir=out_dir, batch_size=args.batch_size, lr=args.lr,
               base_batch_size=0, img_size=32, aug="weak", cutmix_alpha=1.0, mix_prob=0.5, label_smoothing=0.1,
               warmup_epochs=0.3, workers=args.workers, progress=False, tensorboard=False, seed=0)
    cfg.update(kw)
    return TrainConfig(**cfg)


def plain_loop(args: argparse.Namespace, model: nn.Module, steps: int) -> tuple[float, float]:
    """A torchvision-reference style loop (same recipe): returns images per wall and per CPU second."""
    from torchvision import datasets
    from torchvision.transforms import v2

    dataset = datasets.ImageFolder(str(find_split(args.data, ["train"])), build_transforms("weak", 32, True))
    per_class: dict[int, int] = {}
    keep = []
    for i, (_, t) in enumerate(dataset.samples):
        if per_class.get(t, 0) < args.train_per_class:
            keep.append(i)
            per_class[t] = per_class.get(t, 0) + 1
    cutmix = v2.CutMix(alpha=1.0, num_classes=len(dataset.classes))

    def collate(batch):
        images, targets = default_collate(batch)
        if torch.rand(()).item() < 0.5:
            return cutmix(images, targets)
        return images, nn.functional.one_hot(targets, len(dataset.classes)).float()

    subset = Subset(dataset, keep)
    loader = DataLoader(subset, batch_size=args.batch_size, sampler=RandomSampler(subset),
                        num_workers=args.ratio_workers, drop_last=True, collate_fn=collate)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([dict(params=decay, weight_decay=4e-5), dict(params=no_decay, weight_decay=0.0)],
                                lr=args.lr, momentum=0.9, nesterov=True)
    lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    seen = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for i, (image, target) in enumerate(loader):
        output = model(image)
        loss = criterion(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr_scheduler.step()
        seen += image.shape[0]
        if i + 1 == steps:
            break
    return seen / (time.perf_counter() - start), seen / (time.process_time() - cpu_start)


def part_a(args: argparse.Namespace, work: Path) -> list[dict]:
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = make_model(name, 10, args.small_input)
        params = sum(p.numel() for p in model.parameters())
        cfg = base_config(args, model, str(work / name.replace(":", "_")), epochs=args.epochs,
                          train_per_class=args.train_per_class, val_per_class=args.val_per_class)
        r = fit(cfg)
        rows.append(dict(model=name, params_m=params / 1e6, top1=r.final_top1, best_top1=r.best_top1,
                         images_per_s=r.images_per_s, wall_s=r.wall_s, steps=r.history[-1]["step"]))
        print(f"  {name}: top-1 {r.final_top1:.2f}  {r.images_per_s:.1f} img/s  {r.wall_s:.0f} s", flush=True)
    return rows


def part_b(args: argparse.Namespace, work: Path) -> list[dict]:
    rounds = []
    for i in range(args.rounds):
        torch.manual_seed(i)
        init = make_model(args.ratio_model, 10, args.small_input).state_dict()
        order = ("ours", "plain") if i % 2 == 0 else ("plain", "ours")
        speeds, cpu = {}, {}
        for which in order:
            model = make_model(args.ratio_model, 10, args.small_input)
            model.load_state_dict(init)
            if which == "ours":
                cfg = base_config(args, model, str(work / f"ratio{i}"), epochs=1, max_steps=args.steps,
                                  train_per_class=args.train_per_class, val_per_class=1, workers=args.ratio_workers)
                r = fit(cfg)
                speeds[which], cpu[which] = r.images_per_s, r.images_per_cpu_s
            else:
                speeds[which], cpu[which] = plain_loop(args, model, args.steps)
        rounds.append(dict(round=i, ours=speeds["ours"], plain=speeds["plain"], ratio=speeds["ours"] / speeds["plain"],
                           ours_cpu=cpu["ours"], plain_cpu=cpu["plain"], cpu_ratio=cpu["ours"] / cpu["plain"]))
        print(f"  round {i}: wall ours {speeds['ours']:.1f}  plain {speeds['plain']:.1f} img/s  ratio "
              f"{rounds[-1]['ratio']:.3f} | CPU ours {cpu['ours']:.1f}  plain {cpu['plain']:.1f} img/cpu-s  "
              f"ratio {rounds[-1]['cpu_ratio']:.3f}", flush=True)
    return rounds


def plot(rows: list[dict], rounds: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["model"] for r in rows]
    ax1.bar(names, [r["top1"] for r in rows], color="tab:blue")
    ax1.set(ylabel="CIFAR-10 top-1 (%)", title="same short budget")
    ax1.tick_params(axis="x", rotation=15)
    ax2.plot([r["round"] for r in rounds], [r["ratio"] for r in rounds], "o-", label="wall clock")
    ax2.plot([r["round"] for r in rounds], [r["cpu_ratio"] for r in rounds], "s-", label="process CPU time")
    ax2.axhline(1.0, color="gray", lw=0.8)
    ax2.axhline(0.95, color="red", lw=0.8, ls="--", label="-5 %")
    ax2.set(xlabel="round", ylabel="ours / plain images/s", title="loop throughput ratio")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/cifar10", help="CIFAR-10 image folder (train/ test/)")
    p.add_argument("--models", nargs="+", default=["carve_100", "mobilenet_v2_100", "tv:mobilenet_v2"])
    p.add_argument("--ratio-model", default="mobilenet_v2_100")
    p.add_argument("--small-input", type=int, default=1, help="strides removed for 32 px (1: about 4x compute)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ratio-workers", type=int, default=0,
                   help="loader workers in part B (0: decoding counts in the process CPU time of both loops)")
    p.add_argument("--skip-training", action="store_true", help="part B only")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="tiny budget for a smoke run")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.train_per_class, args.val_per_class, args.rounds, args.steps = 1, 13, 10, 2, 3
    if not Path(args.data).is_dir():
        raise SystemExit(f"--data: CIFAR-10 image folder not found at {args.data}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_training:
            print(f"Part A: {args.epochs} epoch(s) x {args.train_per_class * 10} images, small_input="
                  f"{args.small_input}, batch {args.batch_size}, {args.threads} threads, {args.workers} worker(s)",
                  flush=True)
        rows = [] if args.skip_training else part_a(args, Path(tmp))
        print(f"Part B: {args.rounds} rounds x {args.steps} steps, {args.ratio_model}, ours vs plain loop", flush=True)
        rounds = part_b(args, Path(tmp))
    ratios, cpu_ratios = [r["ratio"] for r in rounds], [r["cpu_ratio"] for r in rounds]
    summary = dict(median_ratio=statistics.median(ratios), min_ratio=min(ratios), max_ratio=max(ratios),
                   median_cpu_ratio=statistics.median(cpu_ratios), min_cpu_ratio=min(cpu_ratios),
                   max_cpu_ratio=max(cpu_ratios))
    print(f"\n{'model':20s} {'params (M)':>10s} {'top-1':>7s} {'img/s':>8s} {'wall (s)':>9s}")
    for r in rows:
        print(f"{r['model']:20s} {r['params_m']:10.2f} {r['top1']:7.2f} {r['images_per_s']:8.1f} {r['wall_s']:9.0f}")
    print(f"\nours/plain images/s on {args.ratio_model}, {len(ratios)} rounds: wall clock median "
          f"{summary['median_ratio']:.3f} (min {summary['min_ratio']:.3f}, max {summary['max_ratio']:.3f}); "
          f"process CPU time median {summary['median_cpu_ratio']:.3f} (min {summary['min_cpu_ratio']:.3f}, "
          f"max {summary['max_cpu_ratio']:.3f})")
    result = dict(args=vars(args), models=rows, rounds=rounds, summary=summary,
                  torch=torch.__version__, when=time.strftime("%Y-%m-%d %H:%M:%S"))
    name = "train_cifar10_quick" if args.quick else "train_cifar10_ratio" if args.skip_training else "train_cifar10"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    plot(rows, rounds, out / f"{name}.png")
    print(f"wrote {out / (name + '.json')} and {out / (name + '.png')}")


if __name__ == "__main__":
    main()
