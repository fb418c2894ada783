"""Specialising the shipped supernet: candidates per minute, one sub-network per latency budget, ranking.

    python benchmarks/supernet_search.py [--supernet carve:tiny-imagenet] [--parts speed result ranking]
        [--trials 300] [--budgets 0.5 0.75 1.0] [--threads 2] [--seed 0]

speed: builds the ONNX Runtime latency table of the supernet's parts at 224 px (timed apart: it is
built once per device), then runs the search over the supernet's sub-networks (NSGA-II, Optuna)
for ``--trials`` candidates, each scored by held-out top-1 on ``--val-per-class`` images per class
with inherited weights and BatchNorm re-estimated on ``--bn-batches`` training batches, its
latency predicted from the table. The search's wall time is the figure.

result: for each budget (a fraction of mobilenet_v3_large_100's ONNX Runtime latency at 224 px),
the search specialised to it: a study of ``--budget-trials`` candidates constrained to the budget
(predicted latency, scaled to the machine as it is now by five of the speed part's candidates
timed with the zoo, up to ``--predict-slack`` times it), warm-started from the zoo's carve models
within it (sub-networks of the supernet, so the search starts where the hand design is) and scored
on the first ``--budget-val-per-class`` held-out images per class. Its ``--recheck`` distinct
candidates with the best estimates are scored again on the first ``--select-per-class`` held-out
images per class (BatchNorm re-estimated on 20 batches) and re-measured; the most accurate that
holds the budget is kept. It and every shipped zoo model within the budget are finetuned with one
recipe (the same images, epochs, learning rate and KD teacher: the supernet's largest
sub-network) and scored on the test split: the held-out images after the first
``--select-per-class`` per class, which neither the search nor the pick has seen. All latencies of
this part are taken together, interleaved.

inheritance: the largest and the smallest sub-network trained alone from scratch for the supernet's
epochs (``--inherit-epochs``) with the shipped weights' recipe (``pretrain_tiny_imagenet.recipe``,
warm-up shortened to the supernet's 0.5 epoch), against their top-1 with the supernet's weights.

ranking: ``--rank-count`` sub-networks spread evenly in log-MACs between the smallest and the
largest (both included; the others drawn from the space with ``--seed``, see ``supernet_ranking.spread_subnets``):
top-1 with inherited weights against top-1 when each is trained alone from scratch with one short
recipe (the shipped weights' recipe cut to ``--alone-epochs`` on ``--alone-per-class`` images per
class, warm-up 0.3 epoch, channels-last); Kendall tau. Each training resumes from its folder.

noise (not run by default): the ranking's stand-alone training of ``--noise-subnets`` again with each
of ``--noise-seeds``, the recipe otherwise the one the ranking recorded: how far the seed alone moves
a trained-alone figure, against the spread of figures the ranking orders.

Prints a table per part and writes JSON and a PNG to ``--results`` (JSON after every part).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from carve.files import save_figure, write_json
from carve.latency import PROTOCOLS, compare
from carve.latency.table import build_table, sample_specs
from carve.search import ObjectiveConfig, SearchConfig, run_search
from carve.search.spaces.supernets import SupernetSpace
from carve.search.storage import load_study
from carve.search.trials import trial_spec
from carve.search.supernet_accuracy import SupernetAccuracy
from carve.train import TrainConfig, eval_loader, evaluate, fit
from carve.zoo import create_model, profile
from carve.zoo.shipped import manifest
from carve.zoo.supernet import SHIPPED_NAME, extract, load_supernet

sys.path.insert(0, str(Path(__file__).parent))
from supernet_ranking import held_out_scorer, inheritance, ranking, seed_noise  # noqa: E402  (a sibling script)

TAG = "carve:tiny-imagenet"
REFERENCE = "mobilenet_v3_large_100"
REPO = Path(__file__).resolve().parents[1]


def speed(args: argparse.Namespace, out: Path) -> dict:
    """The latency table (timed apart) and the search over --trials candidates (the timed figure)."""
    space = SupernetSpace(name="supernet", supernet=args.supernet, resolution=(224,))
    t0 = time.perf_counter()
    table_path = out / f"latency_table_{args.runtime}_{args.threads}t.json"
    build_table(sample_specs(space, args.table_samples, args.seed), input_sizes=224, runtime=args.runtime,
                threads=args.threads, fit_models=8, protocol=PROTOCOLS["quick"], save=table_path, progress=True)
    table_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = run_search(search_config(args, out, str(table_path), "speed", args.trials, args.val_per_class))
    search_s = time.perf_counter() - t0
    rows = scored_rows(load_study(result.study_name, result.storage))
    return dict(table_s=round(table_s, 1), search_s=round(search_s, 1), candidates=len(rows),
                per_5_min=round(len(rows) / search_s * 300, 1), storage=result.storage, study=result.study_name,
                table=str(table_path), rows=rows)


def search_config(args: argparse.Namespace, out: Path, table: str, name: str, trials: int, val_per_class: int,
                  budget_ms: float | None = None, warm_start: tuple[str, ...] = ()) -> SearchConfig:
    """The NSGA-II study over the supernet's sub-networks at 224 px, latency predicted from ``table``."""
    objective = ObjectiveConfig(accuracy="supernet", supernet=args.supernet, data=args.data, num_classes=202,
                                img_size=64, batch_size=128, bn_recalibration=args.bn_batches,
                                val_per_class=val_per_class, latency="predict", latency_table=table, latency_size=224,
                                runtime=args.runtime, threads=args.threads, seed=args.seed)
    return SearchConfig(supernet=args.supernet, objective=objective, trials=trials, sampler="nsga2", seed=args.seed,
                        resolution=224, out_dir=str(out / "search"), study_name=name, latency_budget_ms=budget_ms,
                        warm_start=warm_start, resume=(out / "search" / "studies.db").is_file(), remeasure=False,
                        progress=True)


def scored_rows(study: Any) -> list[dict]:
    """The study's complete trials that were scored: number, estimate, predicted latency, MACs."""
    return [dict(number=t.number, accuracy=float(t.user_attrs["accuracy"]),
                 predicted_ms=float(t.user_attrs["latency_ms"]), macs_m=round(float(t.user_attrs["macs"]) / 1e6, 1))
            for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and "accuracy" in t.user_attrs]


class TestSplit:
    """The held-out images after the first ``select`` per class: the search and the pick never see them."""

    def __init__(self, data: str, select: int):
        self.all = list(eval_loader(data, 64, 256, per_class=0, workers=0))
        self.selection = list(eval_loader(data, 64, 256, per_class=select, workers=0))

    def top1(self, model: torch.nn.Module) -> float:
        every, seen = (evaluate(model.eval(), batches, device="cpu") for batches in (self.all, self.selection))
        right = every["top1"] * every["n"] - seen["top1"] * seen["n"]
        return right / (every["n"] - seen["n"])

    def images(self) -> int:
        return sum(len(b[1]) for b in self.all) - sum(len(b[1]) for b in self.selection)


def finetune(model: torch.nn.Module, name: str, teacher: torch.nn.Module, args: argparse.Namespace,
             out: Path, test: TestSplit) -> float:
    """Top-1 on the test split after the shared finetune recipe."""
    tc = TrainConfig(model=name, data=args.data, out_dir=str(out / name), epochs=args.ft_epochs,
                     train_per_class=args.ft_per_class, val_per_class=0, img_size=64, batch_size=64, lr=args.ft_lr,
                     warmup_epochs=0.1, cutmix_alpha=0.0, mix_prob=0.0, bn_recalibration=20, workers=args.workers,
                     seed=args.seed, teacher=teacher, resume=(out / name / "last.pt").is_file(), progress=False)
    return round(test.top1(fit(tc, model=model).model.cpu()), 2)


def result(args: argparse.Namespace, found: dict, supernet: torch.nn.Module, study: Any, out: Path) -> dict:
    """Per budget: the specialised sub-network against every shipped zoo model within it, same finetune."""
    zoo = sorted(n for n in manifest().get(TAG, {}) if n != SHIPPED_NAME)
    # a few of the search's candidates timed with the zoo: the table's scale on the machine as it is now
    by_ms = sorted(found["rows"], key=lambda r: r["predicted_ms"])
    anchors = {f"trial_{r['number']}": r for r in (by_ms[round(q * (len(by_ms) - 1))] for q in (0.1, 0.3, 0.5, 0.7, 0.9))}
    timed = compare(zoo + [create_model(trial_spec(study, r["number"])[0]) for r in anchors.values()],
                    names=zoo + list(anchors), input_size=224, runtime=args.runtime, threads=args.threads,
                    progress=True)
    zoo_ms = {n: r.median_ms for n, r in zip(timed.names, timed.results)}
    scale = statistics.median(zoo_ms.pop(n) / r["predicted_ms"] for n, r in anchors.items())
    print(f"the latency table's predictions x {scale:.3f} = latency measured now", flush=True)
    teacher = extract(supernet, supernet.largest()).eval()
    rescore = SupernetAccuracy(supernet, args.data, 64, batch_size=128, calibration_batches=20,
                               val_per_class=args.select_per_class, seed=args.seed)
    test = TestSplit(args.data, args.select_per_class)
    budgets = []
    for factor in args.budgets:
        budget = factor * zoo_ms[REFERENCE]
        if args.budget_trials:  # specialised to this budget, from the zoo's sub-networks of the supernet within it
            warm = tuple(n for n in zoo if n.startswith("carve_") and zoo_ms[n] <= budget)
            done = run_search(search_config(args, out, found["table"], f"budget_{factor}", args.budget_trials,
                                            args.budget_val_per_class, budget / scale * args.predict_slack, warm))
            source = load_study(done.study_name, done.storage)
            rows = scored_rows(source)
        else:
            warm, rows, source = (), found["rows"], study
        ranked = sorted((r for r in rows if r["predicted_ms"] * scale <= budget * args.predict_slack),
                        key=lambda r: -r["accuracy"])
        if not ranked:
            budgets.append(dict(factor=factor, budget_ms=round(budget, 3), found=None))
            continue
        specs, seen = {}, set()
        for r in ranked:  # NSGA-II samples some sub-networks more than once
            spec = trial_spec(source, r["number"])[0]
            if spec.hash() not in seen and len(specs) < args.recheck:
                seen.add(spec.hash())
                specs[f"trial_{r['number']}"] = spec
        rescored = {n: round(float(rescore(spec)), 2) for n, spec in specs.items()}
        within = [n for n in zoo if zoo_ms[n] <= budget]
        names = list(specs) + within
        models = [create_model(s) for s in specs.values()] + within
        pair = compare(models, names=names, input_size=224, runtime=args.runtime, threads=args.threads, progress=True)
        ms = {n: r.median_ms for n, r in zip(pair.names, pair.results)}
        held = sorted((n for n in specs if ms[n] <= budget * args.tolerance), key=lambda n: -rescored[n])
        pick = held[0] if held else min(specs, key=lambda n: ms[n])
        spec = specs[pick].replace(name=f"found_{int(factor * 100)}")
        top1 = {spec.name: finetune(extract(supernet, spec), spec.name, teacher, args,
                                    out / "finetune" / spec.hash()[:12], test)}
        for n in within:
            top1[n] = finetune(create_model(n, pretrained=TAG, num_classes=202), n, teacher, args, out / "finetune",
                               test)
        best_zoo = max(within, key=lambda n: top1[n]) if within else None
        budgets.append(dict(factor=factor, budget_ms=round(budget, 3), found=spec.name, trial=pick,
                            study=dict(trials=len(rows), warm_start=list(warm)) if args.budget_trials else "speed",
                            found_ms=round(ms[pick], 3), found_within=pick in held,
                            macs_m=round(profile(create_model(spec), 224).macs / 1e6, 1),
                            estimate=next(r["accuracy"] for r in ranked if f"trial_{r['number']}" == pick),
                            rechecked={n: dict(estimate=next(r["accuracy"] for r in ranked
                                                             if f"trial_{r['number']}" == n),
                                               selection_top1=rescored[n], ms=round(ms[n], 3)) for n in specs},
                            top1=top1, zoo_ms={n: round(ms[n], 3) for n in within}, best_zoo=best_zoo,
                            beats_every_zoo_model=all(top1[spec.name] > top1[n] for n in within),
                            spec=spec.to_dict()))
        print(f"budget {factor:.2f}x ({budget:.2f} ms): {spec.name} {top1[spec.name]:.2f} % at {ms[pick]:.2f} ms; "
              + ", ".join(f"{n} {top1[n]:.2f} % at {ms[n]:.2f} ms" for n in within), flush=True)
    return dict(zoo_ms={k: round(v, 3) for k, v in zoo_ms.items()}, reference=REFERENCE, budgets=budgets,
                table_scale=round(scale, 3), selection_per_class=args.select_per_class, test_images=test.images())


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in ("speed", "result", "ranking", "inheritance") if p in report]
    fig, axes = plt.subplots(1, len(parts), figsize=(5.2 * len(parts), 4.2), squeeze=False)
    for ax, part in zip(axes[0], parts):
        r = report[part]
        if part == "speed":
            ax.scatter([x["predicted_ms"] for x in r["rows"]], [x["accuracy"] for x in r["rows"]], s=8, alpha=0.6)
            for b in report.get("result", {}).get("budgets", []):
                ax.axvline(b["budget_ms"], ls="--", c="gray", lw=0.8)
            ax.set(xlabel="predicted ONNX Runtime latency at 224 px (ms)", ylabel="held-out top-1 estimate (%)",
                   title=f"{r['candidates']} candidates in {r['search_s'] / 60:.1f} min")
        elif part == "result":
            for i, b in enumerate(x for x in r["budgets"] if x["found"]):
                names = list(b["top1"])
                ax.bar([i + k * 0.8 / len(names) for k in range(len(names))], [b["top1"][n] for n in names],
                       width=0.8 / len(names), color=["C1"] + ["C0"] * (len(names) - 1))
                for k, n in enumerate(names):
                    ax.text(i + k * 0.8 / len(names), 0.5, n, rotation=90, fontsize=6, ha="center", va="bottom")
            ax.set_xticks(range(len(r["budgets"])), [f"{b['factor']}x\n{b['budget_ms']:.2f} ms" for b in r["budgets"]])
            ax.set(ylabel="held-out top-1 after the same finetune (%)", title="found (orange) vs zoo within budget")
        elif part == "inheritance":
            names = [x["subnet"] for x in r["rows"]]
            ax.bar([i - 0.2 for i in range(len(names))], [x["inherited"] for x in r["rows"]], width=0.4,
                   label="supernet weights")
            ax.bar([i + 0.2 for i in range(len(names))], [x["alone"] for x in r["rows"]], width=0.4,
                   label=f"trained alone, {r['epochs']} epochs")
            ax.set_xticks(range(len(names)), names)
            ax.set(ylabel="held-out top-1 (%)", title="inheritance")
            ax.legend(fontsize=7)
        else:
            ax.scatter([x["alone"] for x in r["rows"]], [x["inherited"] for x in r["rows"]])
            for x in r["rows"]:
                ax.annotate(x["subnet"], (x["alone"], x["inherited"]), fontsize=6)
            inherited = {x["subnet"]: x["inherited"] for x in r["rows"]}
            for i, x in enumerate(report.get("seed_noise", {}).get("rows", [])):
                ax.plot([x["recorded"], x["alone"]], [inherited[x["subnet"]]] * 2, "C1-", marker="|",
                        label="same network, another seed" if i == 0 else None)
            noise = report.get("seed_noise", {})
            title = f"ranking: Kendall tau {r['kendall_tau']:.2f}"
            if noise.get("seed_mean"):
                ax.scatter(noise["seed_mean"], [inherited[n] for n in noise["subnets"]], marker="x",
                           color="C2", label="mean of the seeds")
                title += (f"; vs seeds' mean {noise['tau_inherited_seed_mean']:.2f}"
                          f"\n(seed vs seed {min(noise['tau_between_seeds'].values()):.2f})")
            if noise:
                ax.legend(fontsize=7)
            ax.set(xlabel="top-1 trained alone (%)", ylabel="top-1 inherited (%)", title=title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--supernet", default=TAG)
    p.add_argument("--data", default="../shared/data/tiny-imagenet")
    p.add_argument("--parts", nargs="+", default=["speed", "result", "ranking", "inheritance"],
                   choices=["speed", "result", "ranking", "inheritance", "noise"])
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--table-samples", type=int, default=1500, help="random sub-networks whose parts the table holds")
    p.add_argument("--val-per-class", type=int, default=2, help="held-out images per class scoring a candidate")
    p.add_argument("--bn-batches", type=int, default=4, help="training batches re-estimating BatchNorm")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    p.add_argument("--budget-trials", type=int, default=100,
                   help="result: per budget a study of this many candidates constrained to it, warm-started from "
                        "the zoo's carve models within it (0: pick from the speed part's study)")
    p.add_argument("--budget-val-per-class", type=int, default=5,
                   help="held-out images per class scoring a candidate of those studies (the first of "
                        "--select-per-class)")
    p.add_argument("--recheck", type=int, default=16, help="distinct candidates per budget scored again and "
                                                             "re-measured")
    p.add_argument("--select-per-class", type=int, default=10,
                   help="result: the first N held-out images per class choose among the re-checked candidates "
                        "(the budget studies score on a subset of them); the rest is the test split")
    p.add_argument("--predict-slack", type=float, default=1.2,
                   help="candidates re-measured up to budget x this predicted latency (the table's error)")
    p.add_argument("--tolerance", type=float, default=1.0, help="a re-measured latency within budget x this holds")
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--ft-per-class", type=int, default=50)
    p.add_argument("--ft-lr", type=float, default=0.005, help="finetune learning rate per 256 images")
    p.add_argument("--rank-count", type=int, default=12)
    p.add_argument("--alone-epochs", type=int, default=1)
    p.add_argument("--alone-per-class", type=int, default=100)
    p.add_argument("--noise-subnets", nargs="+", default=["subnet_05"], help="ranking sub-networks trained again")
    p.add_argument("--noise-seeds", type=int, nargs="+", default=[1], help="the seeds they are trained again with")
    p.add_argument("--inherit-epochs", type=int, default=3, help="the supernet's epochs")
    p.add_argument("--inherit-per-class", type=int, default=0, help="their training images per class (0: all)")
    p.add_argument("--runtime", default="onnxruntime", help="the runtime every latency is measured in")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/supernet_search")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    torch.manual_seed(args.seed), random.seed(args.seed)
    torch.set_num_threads(args.threads)
    out, res = Path(args.out), Path(args.results)
    command = "python benchmarks/supernet_search.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    # the last invocation's command; each part keeps the one that measured it
    report: dict = dict(command=command, supernet=args.supernet, seed=args.seed, threads=args.threads)
    json_path = res / "supernet_search.json"

    def save() -> None:
        write_json(json_path, report)
        plot(report, res / "supernet_search.png")

    def run_part(part: str, result: dict) -> None:  # each part records the command that measured it
        report[part] = dict(result, command=command)
        save()

    if "speed" in args.parts or not json_path.is_file():
        report["speed"] = dict(speed(args, out), command=command)
    else:  # the later parts alone: the search the JSON records (its study in --out)
        report.update({k: v for k, v in json.loads(json_path.read_text()).items()
                       if k in ("speed", "result", "ranking", "inheritance", "seed_noise")})
    found = report["speed"]
    print(f"latency table {found['table_s']:.0f} s; search: {found['candidates']} candidates in "
          f"{found['search_s']:.0f} s = {found['per_5_min']:.0f} per 5 min", flush=True)
    save()
    supernet = load_supernet(args.supernet)
    scorer = functools.cache(lambda: held_out_scorer(supernet, args.data))  # read once for both parts
    if "result" in args.parts:
        study = load_study(found["study"], found["storage"])
        run_part("result", result(args, found, supernet, study, out))
    if "ranking" in args.parts:
        run_part("ranking", ranking(args, supernet, out, scorer()))
        print(f"Kendall tau {report['ranking']['kendall_tau']:.3f}", flush=True)
    if "inheritance" in args.parts:
        run_part("inheritance", inheritance(args, supernet, out, scorer()))
    if "noise" in args.parts:
        if "ranking" not in report:
            raise SystemExit("--parts noise: needs the ranking part's results (run --parts ranking first)")
        run_part("seed_noise", seed_noise(args, report["ranking"], out))
        noise = report["seed_noise"]
        if "tau_inherited_seed_mean" in noise:
            print(f"Kendall tau seed vs seed {noise['tau_between_seeds']}, inherited vs each seed "
                  f"{noise['tau_inherited_per_seed']}, vs the seeds' mean {noise['tau_inherited_seed_mean']}",
                  flush=True)
    print(f"wrote {json_path} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
