"""Accuracy vs latency of a study, Pareto front highlighted, zoo models as reference points."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .pareto import pareto_entries

def plot_study(study: Any, out: str | Path, references: dict[str, dict[str, float]] | None = None,
               budget_ms: float | None = None, title: str | None = None, zoo_latency: dict[str, float] | None = None,
               accuracy_label: str | None = None) -> Path:
    """Write a PNG: every complete trial, the Pareto front (re-measured latency where known), reference
    models scored the same way (stars) and, as vertical lines, other models' measured latency."""
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
    shown = [x for x in xs if math.isfinite(x)] + [r["latency_ms"] for r in (references or {}).values()]
    right = max(shown + [budget_ms or 0]) * 1.1 if shown else None
    if right and budget_ms and budget_ms > 2 * max(shown):  # a loose budget would squash the points
        right = max(shown) * 1.3
    for name, ms in (zoo_latency or {}).items():
        if right is None or ms <= right:
            ax.axvline(ms, color="#2ca02c", alpha=0.25, lw=0.8)
            ax.annotate(name, (ms, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=6, color="#2ca02c")
    if budget_ms and (right is None or budget_ms <= right):
        ax.axvline(budget_ms, ls="--", c="0.4", lw=1, label=f"budget {budget_ms:.2f} ms")
    elif budget_ms:
        ax.plot([], [], ls="--", c="0.4", label=f"budget {budget_ms:.0f} ms (off the chart)")
    if right:
        ax.set_xlim(0, right)
    attrs = study.user_attrs.get("carve", {}).get("objective", {})
    ax.set_xlabel(f"latency (ms, {attrs.get('runtime', '?')} on {attrs.get('device', '?')})")
    ax.set_ylabel(accuracy_label or f"accuracy estimate ({attrs.get('accuracy', '?')})")
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
