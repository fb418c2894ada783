"""Parameter-efficient transfer: full finetune vs linear probe vs frozen body vs LoRA (two ranks) vs adapters.

    python benchmarks/peft_transfer.py [--task classify] [--model carve_100] [--pretrained carve:tiny-imagenet]
                                       [--seeds 0 1 2] [--epochs 5] [--img-size 64] [--train-per-class 500]
    python benchmarks/peft_transfer.py --task detect [--seeds 0 1 2] [--epochs 8]   # SSDLite on raccoon

Each method finetunes the same pretrained backbone on the same data, budget (epochs, batch size,
learning rate) and seeds; only what trains differs. ``--task classify`` (CIFAR-10 image folders,
``carve.finetune.classify``, held-out top-1):

* ``full``: every weight (the body at ``backbone_lr_mult`` times the head's rate, classify's default);
* ``linear``: a linear probe, only the new classifier trains (``freeze=linear``);
* ``frozen``: stem and stages frozen with their BatchNorm (``freeze=all``): the last conv and head train;
* ``lora-r<R>``: LoRA on the body's 1x1 convs (``peft=lora:r=R,alpha=2R``), everything else frozen;
* ``adapter``: bottleneck adapters after every block (``peft=adapter:reduction=4``).

``--task detect`` (raccoon in PASCAL VOC layout, ``carve.finetune.detect`` with the SSDLite head,
held-out COCO AP50): the same methods without ``linear`` (the detection head always trains; ``frozen``
is the frozen backbone).

Each run goes in its own process so its peak memory is its own (on CPU the peak RSS above the
process's RSS once torch, peft and carve are loaded; on a GPU the peak allocated CUDA memory). When the ``--pretrained`` weights cannot be had (the shipped
``carve:tiny-imagenet`` may not be published yet), the backbone falls back to random
initialisation, loudly, and the JSON records it: the figures then compare the methods' capacity
from scratch, not transfer. Prints a table of trainable parameters, the score's mean ± std over seeds,
training images/s and peak memory; writes ``peft_transfer[_detect].json`` and ``.png``.
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


def methods(ranks: list[int], task: str = "classify") -> dict[str, dict[str, Any]]:
    """The ClassifyConfig (or DetectConfig) settings of each method, by label."""
    out: dict[str, dict[str, Any]] = {"full": {}}
    if task == "classify":
        out["linear"] = dict(freeze="linear")
    out["frozen"] = dict(freeze="all", frozen_bn=True)
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


def _child(task: str, settings: dict[str, Any], queue: Any) -> None:
    import resource

    import peft  # noqa: F401  every method's process holds the same libraries: peaks compare training alone
    import torch

    from carve.finetune import ClassifyConfig, DetectConfig, classify, detect

    torch.set_num_threads(settings.pop("threads"))
    cuda = settings["device"].startswith("cuda")
    before = 0.0 if cuda else _rss_mib()
    if task == "classify":
        res = classify(ClassifyConfig(**settings))
        score, total = res.top1, res.trainable_params + res.frozen_params
        trainable, speed = res.trainable_params, statistics.mean(row["images_per_s"] for row in res.history)
    else:
        res = detect(DetectConfig(**settings))
        score, trainable, total, speed = 100 * res.metrics["AP50"], res.trainable_params, res.total_params, \
            res.images_per_s
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # peak RSS over the RSS once the libraries are loaded
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before  # KiB on Linux
    queue.put(dict(score=score, trainable=trainable, total=total, images_per_s=speed, peak_mib=peak,
                   wall_s=res.wall_s))


def run_settings(label: str, extra: dict[str, Any], seed: int, args: argparse.Namespace,
                 pretrained: bool | str) -> dict[str, Any]:
    """The config fields of one method's run."""
    common = dict(data=args.data, out_dir=str(Path(args.out) / label / f"seed{seed}"), overwrite=True,
                  epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                  img_size=args.img_size, pretrained=pretrained, seed=seed, workers=args.workers, device=args.device,
                  bn_recalibration=args.bn_recalibration, progress=False, tensorboard=False, threads=args.threads,
                  **extra)
    if args.task == "classify":
        return dict(common, model=args.model, small_input=args.small_input, train_per_class=args.train_per_class,
                    val_per_class=args.val_per_class)
    return dict(common, backbone=args.model, head="ssdlite", split="train", val_split="val", warmup_epochs=1.0,
                eval_every=args.epochs, examples=0)


def one_run(label: str, extra: dict[str, Any], seed: int, args: argparse.Namespace,
            pretrained: bool | str) -> dict[str, Any]:
    """Score, trainable parameters, speed and peak memory of one finetune, in a fresh process (cached
    in its folder's ``result.json`` with its settings: a re-run with the same settings continues where
    it stopped, one with other settings runs again)."""
    import json

    from carve.files import write_json

    done = Path(args.out) / label / f"seed{seed}" / "result.json"
    settings = run_settings(label, extra, seed, args, pretrained)
    if done.is_file():
        cached = json.loads(done.read_text())
        if cached.pop("settings", None) == json.loads(json.dumps(settings)):
            return cached
        print(f"{label} seed {seed}: settings differ from the cached run in {done.parent}; running it again")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(args.task, settings, queue))
    proc.start()
    result = dict(method=label, seed=seed, **queue.get())  # before join: a full queue would block the child's exit
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{label} seed {seed}: the run failed (exit code {proc.exitcode}); see its log above")
    write_json(done, dict(result, settings=settings))
    print(f"{label:10s} seed {seed}: {METRIC[args.task]} {result['score']:6.2f} %  {result['trainable']:>10,} "
          f"trainable  {result['images_per_s']:7.1f} img/s  peak {result['peak_mib']:7.0f} MiB", flush=True)
    return result


METRIC = {"classify": "top-1", "detect": "AP50"}
DEFAULTS = {  # per task: the data and the budget each method gets
    "classify": dict(data="../shared/data/cifar10", epochs=5, batch_size=64, lr=0.05, img_size=64),
    "detect": dict(data="../shared/data/raccoon", epochs=8, batch_size=8, lr=0.02, img_size=320),
}


def summary(runs: list[dict[str, Any]], label: str) -> dict[str, Any]:
    mine = [r for r in runs if r["method"] == label]
    score = [r["score"] for r in mine]
    return dict(method=label, seeds=[r["seed"] for r in mine], trainable=mine[0]["trainable"],
                trainable_pct=round(100 * mine[0]["trainable"] / mine[0]["total"], 3),
                score=round(statistics.mean(score), 2),
                score_std=round(statistics.stdev(score), 2) if len(score) > 1 else 0.0,
                images_per_s=round(statistics.mean(r["images_per_s"] for r in mine), 1),
                peak_mib=round(max(r["peak_mib"] for r in mine)))


def lora_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's floor: the best LoRA within 2 points of full finetuning with <= 10 % of its parameters."""
    full = next((r for r in rows if r["method"] == "full"), None)
    if full is None or not any(r["method"].startswith("lora") for r in rows):
        return dict(met=None, why="needs both full finetuning and LoRA runs (--methods)")
    lora = [r for r in rows if r["method"].startswith("lora") and r["trainable"] <= 0.1 * full["trainable"]]
    if not lora:
        return dict(met=False, why="no LoRA run trains <= 10 % of full finetuning's parameters")
    best = max(lora, key=lambda r: r["score"])
    gap = round(full["score"] - best["score"], 2)
    return dict(met=gap <= 2.0, lora=best["method"], gap=gap,
                trainable_vs_full_pct=round(100 * best["trainable"] / full["trainable"], 2))


def plot(rows: list[dict[str, Any]], path: Path, title: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from carve.files import save_figure

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        a.errorbar(r["trainable"], r["score"], yerr=r["score_std"], fmt="o", capsize=3, label=r["method"])
    a.set(xscale="log", xlabel="trainable parameters", ylabel=f"{metric} (%), mean ± std over seeds")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    names = [r["method"] for r in rows]
    b.bar(names, [r["peak_mib"] for r in rows])
    b.set(ylabel="peak memory (MiB)")
    b.tick_params(axis="x", labelrotation=20)
    b.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from carve.files import write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=sorted(DEFAULTS), default="classify")
    p.add_argument("--model", default="carve_100")
    p.add_argument("--pretrained", default=TAG, help="weights tag or file ('none': random init on purpose)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ranks", type=int, nargs=2, default=[4, 16])
    p.add_argument("--methods", nargs="+", help="only these methods (default: all); results get their names")
    p.add_argument("--data", help="default: CIFAR-10 (classify), raccoon (detect)")
    p.add_argument("--epochs", type=int, help="default: 5 (classify), 8 (detect)")
    p.add_argument("--max-steps", type=int, default=0, help="cap on optimizer steps (0 = none), e.g. for a smoke run")
    p.add_argument("--batch-size", type=int, help="default: 64 (classify), 8 (detect)")
    p.add_argument("--lr", type=float, help="default: 0.05 (classify), 0.02 (detect)")
    p.add_argument("--img-size", type=int, help="default: 64 (classify, the pretraining size), 320 (detect)")
    p.add_argument("--small-input", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--bn-recalibration", type=int, default=20,
                   help="batches re-estimating BatchNorm statistics before evaluation (0 = the running averages)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="default: runs/peft_transfer[_detect]")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    for key, value in DEFAULTS[args.task].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    stem = "peft_transfer" + ("" if args.task == "classify" else "_detect")
    args.out = args.out or f"runs/{stem}"
    pretrained, init = resolve_pretrained(args.model, args.pretrained)
    table = methods(args.ranks, args.task)
    if args.methods:
        unknown = [m for m in args.methods if m not in table]
        if unknown:
            p.error(f"--methods: unknown {unknown}; expected some of {list(table)}")
        table = {k: v for k, v in table.items() if k in args.methods}
        stem += "_" + "_".join(table)
    runs = [one_run(label, extra, s, args, pretrained) for label, extra in table.items() for s in args.seeds]
    rows = [summary(runs, label) for label in table]
    verdict = lora_verdict(rows)
    metric, data = METRIC[args.task], Path(args.data).name
    print(f"\n{args.model} from {init} -> {data} at {args.img_size} px, {args.epochs} epochs"
          f"{f' (max {args.max_steps} steps)' if args.max_steps else ''}, seeds {args.seeds}")
    print(f"{'method':10s} {'trainable':>11s} {'%':>7s} {metric + ' (%)':>15s} {'img/s':>8s} {'peak MiB':>9s}")
    for r in rows:
        print(f"{r['method']:10s} {r['trainable']:>11,} {r['trainable_pct']:7.2f} {r['score']:7.2f} ± "
              f"{r['score_std']:5.2f} {r['images_per_s']:8.1f} {r['peak_mib']:9d}")
    print(f"LoRA floor (within 2 points of full with <= 10 % of its parameters): {verdict}")
    out = Path(args.results)
    command = "python benchmarks/peft_transfer.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(out / f"{stem}.json", dict(command=command, task=args.task, metric=metric, model=args.model, init=init,
                                          settings=vars(args), methods=table, rows=rows, lora_floor=verdict, runs=runs))
    plot(rows, out / f"{stem}.png", f"{args.model} ({init}) -> {data}, {args.epochs} epochs, seeds {args.seeds}",
         f"{data} {metric}")
    print(f"wrote {out / stem}.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
