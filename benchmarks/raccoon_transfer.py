"""Detection transfer from the shipped weights: SSDLite on raccoon, pretrained vs random init, several seeds.

    python benchmarks/raccoon_transfer.py [--models carve_100 ...] [--seeds 0 1 2] [--epochs 12]

Each backbone shipped under ``carve:tiny-imagenet`` and the same architecture from random
initialisation are finetuned with ``carve.finetune.detect`` on raccoon's own split (160 training /
40 held-out images, PASCAL VOC layout) with the same budget and seeds; COCO AP and AP50 on the
held-out images, mean and spread over the seeds, beside what a detector that sees no image scores
(three centred boxes per image: raccoons are large and central, so AP50 has a high floor), and what
each backbone adds above that prior: pretrained against random init. Every
run is cached under ``--out`` (re-running continues where it stopped). Prints a table, writes
``raccoon_transfer.json`` and a PNG.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from carve.files import save_figure, write_json

REPO = Path(__file__).resolve().parents[1]
MODELS = ("carve_075", "carve_100", "carve_125", "mobilenet_v3_large_100", "mobilenet_v2_100", "shufflenet_v2_100")
TAG = "carve:tiny-imagenet"


def one_run(name: str, init: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """AP/AP50 of one finetune (cached in its folder's result.json)."""
    import json

    from carve.finetune import DetectConfig, detect

    out = Path(args.out) / name / f"{init}-seed{seed}"
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = DetectConfig(backbone=name, pretrained=TAG if init == "pretrained" else False, head="ssdlite",
                       data=args.data, split="train", val_split="val", img_size=args.img_size, epochs=args.epochs,
                       batch_size=8, lr=args.lr, warmup_epochs=1.0, seed=seed, out_dir=str(out), eval_every=args.epochs,
                       resume=(out / "last.pt").is_file(), progress=False, tensorboard=False, examples=0)
    res = detect(cfg)
    result = dict(model=name, init=init, seed=seed, AP=res.metrics["AP"], AP50=res.metrics["AP50"],
                  wall_s=round(res.wall_s, 1))
    write_json(done, result)
    print(f"{name:24s} {init:10s} seed {seed}: AP50 {100 * result['AP50']:.1f} %  AP {100 * result['AP']:.1f} %",
          flush=True)
    return result


def summary(runs: list[dict[str, Any]], name: str, init: str) -> dict[str, Any]:
    mine = [r for r in runs if r["model"] == name and r["init"] == init]
    out: dict[str, Any] = dict(model=name, init=init, seeds=[r["seed"] for r in mine])
    for key in ("AP", "AP50"):
        values = [100 * r[key] for r in mine]
        out[key] = round(statistics.mean(values), 2)
        out[f"{key}_std"] = round(statistics.stdev(values), 2) if len(values) > 1 else 0.0
    return out


def gain_ratio(pretrained: float, random: float, prior: float) -> float | None:
    """How many times more AP50 the pretrained backbone adds over the no-image prior than random init
    adds; None when random init does not rise above the prior (any gain of the pretrained one is then
    all the backbone's)."""
    if random <= prior:
        return None
    return round((pretrained - prior) / (random - prior), 2)


def box_prior(data: str, split: str = "val") -> dict[str, float]:
    """AP/AP50 (%) of a detector that sees no image (``carve.finetune.evaluate.box_prior``)."""
    from carve.finetune.data_voc import read_voc
    from carve.finetune.evaluate import box_prior as prior

    return {k: round(100 * v, 2) for k, v in prior(read_voc(data, split).to_coco()).items()}


def plot(rows: list[dict[str, Any]], path: Path, prior: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["model"] for r in rows}, key=[r["model"] for r in rows].index)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, init in enumerate(("pretrained", "random")):
        vals = [next(r for r in rows if r["model"] == n and r["init"] == init) for n in names]
        ax.bar([x + 0.38 * i for x in range(len(names))], [v["AP50"] for v in vals], 0.38,
               yerr=[v["AP50_std"] for v in vals], capsize=3, label=f"{init} backbone")
    ax.axhline(prior["AP50"], color="tab:red", ls="--", lw=1, label="centred-box prior (no image seen)")
    ax.set_xticks([x + 0.19 for x in range(len(names))], names, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="raccoon AP50 (%), mean over seeds", title="SSDLite on raccoon: shipped Tiny ImageNet weights vs "
                                                                "random init, same budget")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", default="../shared/data/raccoon")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--img-size", type=int, default=320)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/raccoon_transfer")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = [one_run(n, init, s, args) for n in args.models for init in ("pretrained", "random") for s in args.seeds]
    rows = [summary(runs, n, init) for n in args.models for init in ("pretrained", "random")]
    prior = box_prior(args.data)
    print(f"\n{'backbone':24s} {'init':10s} {'AP50 (%)':>14s} {'AP (%)':>14s}  {'AP50/random':>11s}  "
          f"{'AP50 above prior':>16s}  {'gain/random gain':>16s}  {'AP above prior':>14s}")
    for r in rows:
        r["AP50_above_prior"] = round(r["AP50"] - prior["AP50"], 2)
        r["AP_above_prior"] = round(r["AP"] - prior["AP"], 2)
        ratio = gain = ""
        if r["init"] == "pretrained":
            rand = next(x for x in rows if x["model"] == r["model"] and x["init"] == "random")
            r["ratio_vs_random"] = None if not rand["AP50"] else round(r["AP50"] / rand["AP50"], 2)
            ratio = "inf" if r["ratio_vs_random"] is None else f"{r['ratio_vs_random']:.2f}x"
            r["gain_vs_random_gain"] = gain_ratio(r["AP50"], rand["AP50"], prior["AP50"])
            gain = (f"{r['gain_vs_random_gain']:.2f}x" if r["gain_vs_random_gain"] is not None
                    else "random <= prior" if r["AP50"] > prior["AP50"] else "none above prior")
        print(f"{r['model']:24s} {r['init']:10s} {r['AP50']:7.2f} ± {r['AP50_std']:4.2f} {r['AP']:7.2f} ± "
              f"{r['AP_std']:4.2f}  {ratio:>11s}  {r['AP50_above_prior']:+16.2f}  {gain:>16s}  "
              f"{r['AP_above_prior']:+14.2f}")
    print(f"{'centred-box prior':24s} {'none':10s} {prior['AP50']:7.2f}        {prior['AP']:7.2f}         "
          "(three fixed boxes per image, no learning)")
    out = Path(args.results)
    command = "python benchmarks/raccoon_transfer.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(out / "raccoon_transfer.json", dict(command=command, epochs=args.epochs, img_size=args.img_size,
                                                   lr=args.lr, seeds=args.seeds, rows=rows, prior=prior,
                                                   runs=runs))
    plot(rows, out / "raccoon_transfer.png", prior)
    print(f"wrote {out / 'raccoon_transfer.json'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
