"""One function per step of ``carve run``: ``step(cfg, state) -> summary dict`` (JSON-serialisable).

Each step writes its files under ``state.step_dir(step)`` and reads earlier steps only through
their summaries, so any step can be re-run alone on a finished run folder.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

from tqdm import tqdm

from .config import RunConfig
from .state import RunState, write_json

STAGES = {"search": ("carve.search", "run_search", 5), "train": ("carve.train", "fit", 4),
          "finetune": ("carve.finetune", "detect", 6), "compress": ("carve.compress.pipeline", "pipeline", 7)}


class StageMissing(RuntimeError):
    """The stage a step needs is not installed (yet)."""


def require(stage: str) -> Any:
    """The entry point of a stage's library API, or StageMissing naming the stage and its issue."""
    module_name, attr, issue = STAGES[stage]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StageMissing(f"step {stage!r} needs the {stage} stage ({module_name}, issue {issue}), which "
                           f"failed to import: {exc}") from None
    if not hasattr(module, attr):
        raise StageMissing(f"step {stage!r} needs {module_name}.{attr} (the {stage} stage, issue {issue}), "
                           "which is not in this installation yet; no results are made up for it")
    return getattr(module, attr)


# -- zoo ---------------------------------------------------------------------------------------


def best_published_top1(entry: Any) -> float | None:
    scores = [w.top1 for w in entry.weights if w.top1 is not None]
    return max(scores) if scores else None


def strongest_under_budget(rows: list[dict], budget_ms: float, reference: str) -> dict:
    """The hand-designed zoo model within the budget with the best published ImageNet top-1
    (most MACs when none has a published figure); the reference model always qualifies."""
    fits = [r for r in rows if r["latency_ms"] <= budget_ms or r["name"] == reference]
    fits = [r for r in fits if r["family"] != "carve"] or fits
    scored = [r for r in fits if r["imagenet_top1"] is not None]
    if scored:
        return max(scored, key=lambda r: (r["imagenet_top1"], -r["latency_ms"]))
    return max(fits, key=lambda r: r["macs_m"])


def run_zoo(cfg: RunConfig, state: RunState) -> dict:
    """Profile the zoo's models (params, MACs, measured latency) and choose the latency budget."""
    from carve.zoo import create_model, get_entry, list_models, profile

    from . import plots
    from .latency import measure_each

    out = state.step_dir("zoo")
    names = list_models(cfg.zoo.models)
    if cfg.zoo.reference not in names:
        names.append(get_entry(cfg.zoo.reference).name)
    if not names:
        raise ValueError(f"zoo.models: pattern {cfg.zoo.models!r} matches no zoo model")
    models, rows = {}, []
    for name in tqdm(names, desc="zoo: profile", unit="model"):
        model = create_model(name).eval()
        prof = profile(model, cfg.zoo.input_size)
        entry = get_entry(name)
        models[name] = model
        rows.append(dict(name=name, family=entry.family, params_m=round(prof.params / 1e6, 3),
                         macs_m=round(prof.macs / 1e6, 1), imagenet_top1=best_published_top1(entry)))
    print(f"[carve run] zoo: timing {len(models)} models, one at a time as the search times its candidates "
          f"({cfg.zoo.runtime}, {cfg.zoo.input_size} px)", file=sys.stderr, flush=True)
    timings, engine = measure_each(models, cfg.zoo.input_size, cfg.zoo.runtime, cfg.zoo.protocol, cfg.zoo.threads)
    for r in rows:
        t = timings[r["name"]]
        r.update(latency_ms=round(t.median_ms, 3), p10_ms=round(t.p10_ms, 3), p90_ms=round(t.p90_ms, 3))
    budget = cfg.zoo.budget_ms if cfg.zoo.budget_ms is not None else timings[cfg.zoo.reference].median_ms
    budget_source = "zoo.budget_ms" if cfg.zoo.budget_ms is not None else f"measured latency of {cfg.zoo.reference}"
    hand = strongest_under_budget(rows, budget, cfg.zoo.reference)
    rows.sort(key=lambda r: r["latency_ms"])
    write_json(out / "zoo.json", rows)
    plots.zoo_chart(rows, budget, cfg.zoo.reference, out / "zoo.png", cfg.zoo.runtime, cfg.zoo.input_size)
    return dict(models=rows, budget_ms=round(budget, 3), budget_source=budget_source, reference=cfg.zoo.reference,
                hand_designed=hand["name"], engine=engine, input_size=cfg.zoo.input_size,
                runtime=cfg.zoo.runtime, chart="zoo/zoo.png", table="zoo/zoo.json")


# -- the stages that come from the other packages ------------------------------------------------


def run_search(cfg: RunConfig, state: RunState) -> dict:
    """Multi-objective search (accuracy, latency) under the zoo step's budget on CIFAR-10."""
    require("search")
    from .stage_steps import run_search_step

    return run_search_step(cfg, state)


def run_train(cfg: RunConfig, state: RunState) -> dict:
    """Train the best found model and the strongest hand-designed model under the budget."""
    require("train")
    from .stage_steps import run_train_step

    return run_train_step(cfg, state)


def run_finetune(cfg: RunConfig, state: RunState) -> dict:
    """Transfer both trained backbones to SSDLite detection on coco128 and evaluate mAP."""
    require("finetune")
    from .late_steps import run_finetune_step

    return run_finetune_step(cfg, state)


def run_compress(cfg: RunConfig, state: RunState) -> dict:
    """Fold, prune and quantize the winner; export ONNX; measure."""
    require("compress")
    from .late_steps import run_compress_step

    return run_compress_step(cfg, state)


def run_report(cfg: RunConfig, state: RunState) -> dict:
    """One self-contained HTML page and a Markdown file from every finished step."""
    from .report import build_report

    html, md = build_report(cfg, state)
    return dict(html=str(html.relative_to(state.root)), markdown=str(md.relative_to(state.root)))


STEP_FUNCTIONS: dict[str, Callable[[RunConfig, RunState], dict]] = {
    "zoo": run_zoo, "search": run_search, "train": run_train, "finetune": run_finetune,
    "compress": run_compress, "report": run_report}
DEPENDS = {"zoo": (), "search": ("zoo",), "train": ("zoo", "search"), "finetune": ("train",),
           "compress": ("zoo", "train"), "report": ()}
