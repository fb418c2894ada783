"""Scoring one candidate inside a trial: budgets as constraints, metrics as trial attributes."""

from __future__ import annotations

import math
from typing import Any

from .config import SearchConfig
from .objective import Objective


def constraint_values(cfg: SearchConfig, metrics: dict[str, float]) -> dict[str, float]:
    """Budget violations (value - budget, feasible when <= 0) for the budgets that are set."""
    out = {}
    for key, budget in (("latency_ms", cfg.latency_budget_ms), ("macs", cfg.macs_budget),
                        ("params", cfg.params_budget)):
        if budget is not None and math.isfinite(metrics.get(key, float("nan"))):
            out[key] = metrics[key] - budget
    return out


def evaluate_candidate(cfg: SearchConfig, objective: Objective, spec: Any, resolution: int, name: str,
                       set_attr: Any, set_constraint: Any, report: Any = None) -> tuple[float, float]:
    """Score one candidate, record attrs and constraints; shared by the Optuna and Ray engines."""
    set_attr("spec", spec.to_dict())
    set_attr("resolution", resolution)
    try:
        cost = objective.cost(spec, resolution)
        for k, v in cost.items():
            set_attr(k, v)
        violations = constraint_values(cfg, cost)
        for k, v in violations.items():
            set_constraint(k, v)
        if cfg.skip_infeasible and any(v > 0 for v in violations.values()):
            set_attr("skipped", "over budget: accuracy not estimated")
            accuracy = 0.0
        else:
            accuracy = objective.accuracy(spec, name, report)
            if not math.isfinite(accuracy):
                raise FloatingPointError(f"accuracy estimate is {accuracy} (diverged)")
        set_attr("accuracy", accuracy)
    except Exception as exc:
        set_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return accuracy, cost["latency_ms"]
