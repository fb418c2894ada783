"""The run's first step: profile and time the zoo, choose the latency budget."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from carve.files import write_json

from .config import RunConfig
from .state import RunState


def best_published_top1(entry: Any) -> float | None:
    scores = [w.top1 for w in entry.weights if w.top1 is not None and w.dataset == "imagenet-1k"]
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
