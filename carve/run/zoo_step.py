"""The run's first step: profile and time the zoo, choose the latency budget."""

from __future__ import annotations

import sys

from carve.files import write_json

from .config import RunConfig
from .state import RunState


def zoo_names(models: str, reference: str) -> list[str]:
    """The zoo models a run times: those matching any of the comma-separated globs, plus the reference."""
    from carve.zoo import get_entry, list_models

    names = sorted({n for pattern in models.split(",") for n in list_models(pattern.strip())})
    if not names:
        raise ValueError(f"zoo.models: no zoo model matches {models!r}; see `carve zoo list`")
    return names if reference in names else names + [get_entry(reference).name]


def strongest_under_budget(rows: list[dict], budget_ms: float, reference: str, pretrained: str | None = None) -> dict:
    """The hand-designed zoo model within the budget with the best published ImageNet top-1
    (most MACs when none has a published figure), among those with ``pretrained`` weights when
    given; the reference model always qualifies."""
    if pretrained:
        rows = [r for r in rows if pretrained in r.get("weights", ()) or r["name"] == reference]
    fits = [r for r in rows if r["latency_ms"] <= budget_ms or r["name"] == reference]
    fits = [r for r in fits if r["family"] != "carve"] or fits
    scored = [r for r in fits if r["imagenet_top1"] is not None]
    if scored:
        return max(scored, key=lambda r: (r["imagenet_top1"], -r["latency_ms"]))
    return max(fits, key=lambda r: r["macs_m"])


def run_zoo(cfg: RunConfig, state: RunState) -> dict:
    """Profile the zoo's models (params, MACs, measured latency) and choose the latency budget."""
    from carve.latency import PROTOCOLS
    from carve.latency.zoo_bench import bench_zoo
    from carve.zoo import get_entry, zoo_table

    from . import plots

    z = cfg.zoo
    out = state.step_dir("zoo")
    names = zoo_names(z.models, z.reference)
    rows = zoo_table(names=names, input_size=z.input_size)
    for r in rows:
        r["weights"] = [w.tag for w in get_entry(r["name"]).weights]
    print(f"[carve run] zoo: timing {len(rows)} models, one at a time as the search times its candidates "
          f"({z.runtime}, {z.input_size} px)", file=sys.stderr, flush=True)
    timed = bench_zoo(names, input_size=z.input_size, runtime=z.runtime, threads=z.threads,
                      protocol=PROTOCOLS[z.protocol], cache=False, progress=True)
    for r, t in zip(rows, timed):
        r.update(latency_ms=round(t["median_ms"], 3), p10_ms=round(t["p10_ms"], 3), p90_ms=round(t["p90_ms"], 3))
    latency = {r["name"]: r["latency_ms"] for r in rows}
    budget = z.budget_ms if z.budget_ms is not None else latency[z.reference]
    budget_source = "zoo.budget_ms" if z.budget_ms is not None else f"measured latency of {z.reference}"
    if cfg.pretrained and cfg.pretrained not in get_entry(z.reference).weights_tags():
        raise ValueError(f"zoo.reference: {z.reference} has no {cfg.pretrained!r} weights to start from; shipped "
                         f"with them: {', '.join(r['name'] for r in rows if cfg.pretrained in r['weights']) or 'none'}")
    hand = strongest_under_budget(rows, budget, z.reference, cfg.pretrained)
    rows.sort(key=lambda r: r["latency_ms"])
    write_json(out / "zoo.json", rows)
    plots.zoo_chart(rows, budget, z.reference, out / "zoo.png", z.runtime, z.input_size)
    engine = f"latency engine (carve.latency.measure, {z.runtime}, {z.protocol} protocol, one model at a time)"
    return dict(models=rows, budget_ms=round(budget, 3), budget_source=budget_source, reference=z.reference,
                hand_designed=hand["name"], engine=engine, input_size=z.input_size,
                runtime=z.runtime, chart="zoo/zoo.png", table="zoo/zoo.json")
