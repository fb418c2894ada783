"""The Pareto set of a finished study, as plain entries and as a table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ParetoEntry:
    """One non-dominated, feasible trial: its spec (plain dict), metrics and re-measured latency."""

    number: int
    accuracy: float
    latency_ms: float
    params: float
    macs: float
    resolution: int
    spec: dict[str, Any]
    remeasured_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pareto_entries(study: Any) -> list[ParetoEntry]:
    """Feasible non-dominated complete trials, fastest first (skipped over-budget trials excluded)."""
    trials = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    out = []
    for t in trials:
        if "skipped" in t.user_attrs or "spec" not in t.user_attrs:
            continue
        ua = t.user_attrs
        out.append(ParetoEntry(number=t.number, accuracy=float(ua.get("accuracy", t.values[0])),
                               latency_ms=float(ua.get("latency_ms", float("nan"))), params=float(ua.get("params", 0)),
                               macs=float(ua.get("macs", 0)), resolution=int(ua.get("resolution", 224)),
                               spec=ua["spec"]))
    return sorted(out, key=lambda e: (e.latency_ms, -e.accuracy))


def format_table(entries: list[ParetoEntry]) -> str:
    """A fixed-width table of Pareto entries."""
    head = f"{'trial':>5s} {'accuracy':>9s} {'latency ms':>10s} {'remeasured':>10s} {'params M':>8s} " \
           f"{'MACs M':>8s} {'res':>4s}  name"
    lines = [head]
    for e in entries:
        rem = f"{e.remeasured_ms:10.3f}" if e.remeasured_ms is not None else f"{'-':>10s}"
        lines.append(f"{e.number:5d} {e.accuracy:9.4f} {e.latency_ms:10.3f} {rem} {e.params / 1e6:8.3f} "
                     f"{e.macs / 1e6:8.1f} {e.resolution:4d}  {e.spec.get('name', '?')}")
    return "\n".join(lines)
