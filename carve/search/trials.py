"""A finished study's trials as specs: one trial's spec, the most accurate feasible one, written as arch.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from carve.files import write_json
from carve.zoo import ArchSpec, parse_spec

from .spaces import SupernetSpace, get_space
from .storage import load_study


def trial_spec(study: Any, number: int) -> tuple[ArchSpec, int]:
    """(spec, resolution) of trial ``number``: the recorded spec, else decoded from the params."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise KeyError(f"trial {number} not in study {study.study_name!r} (0..{max(trials) if trials else -1})")
    t = trials[number]
    if "spec" in t.user_attrs:
        return parse_spec(t.user_attrs["spec"]), int(t.user_attrs.get("resolution", 224))
    attrs = study.user_attrs.get("carve", {})
    if attrs.get("supernet"):
        space = SupernetSpace(name=attrs.get("space_name", "supernet"), supernet=attrs["supernet"])
    else:
        space = get_space(attrs.get("space", "mbconv"))
    if attrs.get("resolution"):
        space = space.with_resolution(attrs["resolution"])
    return space.decode(t.params)


def best_trial_number(study: Any) -> int:
    """The most accurate feasible Pareto trial."""
    from .pareto import pareto_entries

    entries = pareto_entries(study)
    if not entries:
        raise ValueError(f"study {study.study_name!r} has no feasible complete trial")
    return max(entries, key=lambda e: e.accuracy).number


def export_spec(study_name: str, storage: str, trial: int | None = None, out: str | Path | None = None,
           num_classes: int | None = None) -> ArchSpec:
    """The spec of ``trial`` (default: the most accurate feasible Pareto trial); written to ``out``."""
    study = load_study(study_name, storage)
    number = best_trial_number(study) if trial is None else trial
    spec, _ = trial_spec(study, number)
    if num_classes is not None:
        spec = spec.with_num_classes(num_classes)
    if out is not None:
        write_json(Path(out), spec.to_dict())
    return spec


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every complete, scored trial: number, accuracy, latency_ms, params_m, macs_m (over-budget skips left out)."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        ua = t.user_attrs
        if "skipped" in ua or "accuracy" not in ua:
            continue
        rows.append(dict(number=t.number, accuracy=float(ua["accuracy"]), latency_ms=float(ua["latency_ms"]),
                         params_m=round(float(ua.get("params", 0)) / 1e6, 3),
                         macs_m=round(float(ua.get("macs", 0)) / 1e6, 1)))
    return rows
