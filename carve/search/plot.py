"""Accuracy vs latency of a study, Pareto front highlighted, zoo models as reference points."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .pareto import pareto_entries

DEFAULT_REFERENCES = ("mobilenet_v3_small_100", "mobilenet_v3_large_100", "shufflenet_v2_100", "carve_100")


def zoo_references(study: Any, names: list[str] | tuple[str, ...], out_dir: str | Path = "runs/search") -> dict:
    """Score zoo models with the study's own objective (same estimator, runtime and resolution rule).

    Results are cached on the study (user attr ``zoo_reference``), so plotting again is cheap.
    """
    from carve.zoo import create_model

    from .objective import Objective, ObjectiveConfig

    attrs = study.user_attrs.get("carve", {})
    cached = dict(study.user_attrs.get("zoo_reference", {}))
    cfg = ObjectiveConfig.from_dict(attrs.get("objective", {}))
    resolution = attrs.get("resolution") or 224
    objective = Objective(cfg, out_dir)
    for name in names:
        if name in cached:
            continue
        spec = create_model(name).spec
        metrics = objective.evaluate(spec, resolution, name=f"zoo-{name}")
        cached[name] = dict(accuracy=metrics["accuracy"], latency_ms=metrics["latency_ms"])
        study.set_user_attr("zoo_reference", cached)
    return {n: cached[n] for n in names}


def plot_study(study: Any, out: str | Path, references: dict[str, dict[str, float]] | None = None,
               budget_ms: float | None = None, title: str | None = None) -> Path:
    """Write a PNG: every complete trial, the Pareto front (re-measured latency where known), references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "skipped" not in t.user_attrs]
    remeasured = study.user_attrs.get("remeasured_ms", {})
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [t.user_attrs.get("latency_ms", math.nan) for t in trials]
    ys = [t.user_attrs.get("accuracy", t.values[0]) for t in trials]
    ax.scatter(xs, ys, s=14, c="0.7", label=f"trials ({len(trials)})")
    front = pareto_entries(study)
    if front:
        fx = [remeasured.get(str(e.number), e.latency_ms) for e in front]
        fy = [e.accuracy for e in front]
        order = sorted(range(len(fx)), key=fx.__getitem__)
        ax.plot([fx[i] for i in order], [fy[i] for i in order], "o-", c="tab:red", label="Pareto (re-measured)")
    for name, ref in (references or {}).items():
        ax.scatter([ref["latency_ms"]], [ref["accuracy"]], marker="*", s=120, zorder=3)
        ax.annotate(name, (ref["latency_ms"], ref["accuracy"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    budget_ms = budget_ms or study.user_attrs.get("carve", {}).get("budgets", {}).get("latency_ms")
    if budget_ms:
        ax.axvline(budget_ms, ls="--", c="0.4", lw=1, label=f"budget {budget_ms:.2f} ms")
    attrs = study.user_attrs.get("carve", {}).get("objective", {})
    ax.set_xlabel(f"latency (ms, {attrs.get('runtime', '?')} on {attrs.get('device', '?')})")
    ax.set_ylabel(f"accuracy estimate ({attrs.get('accuracy', '?')})")
    ax.set_title(title or f"study {study.study_name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return out
