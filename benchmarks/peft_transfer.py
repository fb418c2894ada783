"""Parameter-efficient transfer to CIFAR-10: full finetune vs frozen body vs LoRA (two ranks) vs adapters.

    python benchmarks/peft_transfer.py [--model carve_075] [--pretrained carve:tiny-imagenet] [--seeds 0 1 2]
                                       [--epochs 5] [--train-per-class 500] [--val-per-class 100]

Each method finetunes the same pretrained backbone with ``carve.finetune.classify`` on the same
data, budget (epochs, batch size, learning rate) and seeds; only what trains differs:

* ``full``: every weight (the body at ``backbone_lr_mult`` times the head's rate, classify's default);
* ``frozen``: stem and stages frozen with their BatchNorm (``freeze=all``): the last conv and head train;
* ``lora-r<R>``: LoRA on the body's 1x1 convs (``peft=lora:r=R,alpha=2R``), everything else frozen;
* ``adapter``: bottleneck adapters after every block (``peft=adapter:reduction=4``).

Each run goes in its own process so its peak memory is its own (on CPU the peak RSS above the
process's RSS once torch, peft and carve are loaded; on a GPU the peak allocated CUDA memory). When the ``--pretrained`` weights cannot be had (the shipped
``carve:tiny-imagenet`` may not be published yet), the backbone falls back to random
initialisation, loudly, and the JSON records it: the figures then compare the methods' capacity
from scratch, not transfer. Prints a table of trainable parameters, top-1 mean ± std over seeds,
training images/s and peak memory; writes ``peft_transfer.json`` and ``peft_transfer.png``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TAG = "carve:tiny-imagenet"


def methods(ranks: list[int]) -> dict[str, dict[str, Any]]:
    """The ClassifyConfig settings of each method, by label."""
    out: dict[str, dict[str, Any]] = {"full": {}, "frozen": dict(freeze="all", frozen_bn=True)}
    for r in ranks:
        out[f"lora-r{r}"] = dict(peft=f"lora:r={r},alpha={2 * r}")
    out["adapter"] = dict(peft="adapter:reduction=4")
    return out


def resolve_pretrained(model: str, pretrained: str) -> tuple[bool | str, str]:
    """(what to pass as ``pretrained``, a note): the weights asked for, or random init when unavailable."""
    from carve.zoo import WeightsError, create_model

    if pretrained in ("", "none", "false"):
        return False, "random init (asked)"
    try:
        create_model(model, pretrained=pretrained)
    except (WeightsError, FileNotFoundError, ValueError) as exc:
        print(f"WARNING: pretrained weights {pretrained!r} for {model} unavailable ({exc}); FALLING BACK TO RANDOM "
              f"INITIALISATION: the table then compares the methods from scratch, not transfer", flush=True)
        return False, f"random init: {pretrained} unavailable"
    return pretrained, pretrained


def _rss_mib() -> float:
    """The process's resident memory now (Linux), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _child(settings: dict[str, Any], queue: Any) -> None:
    import resource

    import peft  # noqa: F401  every method's process holds the same libraries: peaks compare training alone
    import torch

    from carve.finetune import ClassifyConfig, classify

    torch.set_num_threads(settings.pop("threads"))
    cuda = settings["device"].startswith("cuda")
    before = 0.0 if cuda else _rss_mib()
    res = classify(ClassifyConfig(**settings))
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # peak RSS over the RSS once the libraries are loaded
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before  # KiB on Linux
    speeds = [row["images_per_s"] for row in res.history]
    queue.put(dict(top1=res.top1, trainable=res.trainable_params, total=res.trainable_params + res.frozen_params,
                   images_per_s=statistics.mean(speeds), peak_mib=peak, wall_s=res.wall_s))


def one_run(label: str, extra: dict[str, Any], seed: int, args: argparse.Namespace,
            pretrained: bool | str) -> dict[str, Any]:
    """Top-1, trainable parameters, speed and peak memory of one finetune, in a fresh process."""
    settings = dict(model=args.model, pretrained=pretrained, data=args.data, out_dir=str(Path(args.out) / label /
                    f"seed{seed}"), overwrite=True, epochs=args.epochs, max_steps=args.max_steps,
                    batch_size=args.batch_size, lr=args.lr, img_size=args.img_size, small_input=args.small_input,
                    train_per_class=args.train_per_class, val_per_class=args.val_per_class, seed=seed,
                    workers=args.workers, device=args.device, progress=False, tensorboard=False,
                    threads=args.threads, **extra)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(settings, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{label} seed {seed}: the run failed (exit code {proc.exitcode}); see its log above")
    result = dict(method=label, seed=seed, **queue.get())
    print(f"{label:10s} seed {seed}: top-1 {result['top1']:6.2f} %  {result['trainable']:>10,} trainable  "
          f"{result['images_per_s']:7.1f} img/s  peak {result['peak_mib']:7.0f} MiB", flush=True)
    return result


def summary(runs: list[dict[str, Any]], label: str) -> dict[str, Any]:
    mine = [r for r in runs if r["method"] == label]
    top1 = [r["top1"] for r in mine]
    return dict(method=label, seeds=[r["seed"] for r in mine], trainable=mine[0]["trainable"],
                trainable_pct=round(100 * mine[0]["trainable"] / mine[0]["total"], 3),
                top1=round(statistics.mean(top1), 2), top1_std=round(statistics.stdev(top1), 2) if len(top1) > 1 else 0.0,
                images_per_s=round(statistics.mean(r["images_per_s"] for r in mine), 1),
                peak_mib=round(max(r["peak_mib"] for r in mine)))


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        a.errorbar(r["trainable"], r["top1"], yerr=r["top1_std"], fmt="o", capsize=3, label=r["method"])
    a.set(xscale="log", xlabel="trainable parameters", ylabel="CIFAR-10 top-1 (%), mean ± std over seeds")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    names = [r["method"] for r in rows]
    b.bar(names, [r["peak_mib"] for r in rows])
    b.set(ylabel="peak memory (MiB)")
    b.tick_params(axis="x", labelrotation=20)
    b.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from carve.files import write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="carve_075")
    p.add_argument("--pretrained", default=TAG, help="weights tag or file ('none': random init on purpose)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ranks", type=int, nargs=2, default=[4, 16])
    p.add_argument("--data", default="../shared/data/cifar10")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=0, help="cap on optimizer steps (0 = none), e.g. for a smoke run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--small-input", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/peft_transfer")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    pretrained, init = resolve_pretrained(args.model, args.pretrained)
    table = methods(args.ranks)
    runs = [one_run(label, extra, s, args, pretrained) for label, extra in table.items() for s in args.seeds]
    rows = [summary(runs, label) for label in table]
    print(f"\n{args.model} from {init}, CIFAR-10 at {args.img_size} px, {args.epochs} epochs"
          f"{f' (max {args.max_steps} steps)' if args.max_steps else ''}, seeds {args.seeds}")
    print(f"{'method':10s} {'trainable':>11s} {'%':>7s} {'top-1 (%)':>15s} {'img/s':>8s} {'peak MiB':>9s}")
    for r in rows:
        print(f"{r['method']:10s} {r['trainable']:>11,} {r['trainable_pct']:7.2f} {r['top1']:7.2f} ± {r['top1_std']:5.2f} "
              f"{r['images_per_s']:8.1f} {r['peak_mib']:9d}")
    out = Path(args.results)
    command = "python benchmarks/peft_transfer.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(out / "peft_transfer.json", dict(command=command, model=args.model, init=init, settings=vars(args),
                                                methods=table, rows=rows, runs=runs))
    plot(rows, out / "peft_transfer.png", f"{args.model} ({init}) -> CIFAR-10, {args.epochs} epochs, "
                                          f"seeds {args.seeds}")
    print(f"wrote {out / 'peft_transfer.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
