"""The run's search step: a multi-objective study under the zoo step's budget."""

from __future__ import annotations

import json
from typing import Any

from carve.files import write_json

from .config import RunConfig
from .state import RunState, rel

def objective_config(cfg: RunConfig, zoo: dict) -> Any:
    """The search objective: short proxy training on CIFAR-10, latency timed like the zoo step."""
    from carve.search import ObjectiveConfig

    s = cfg.search
    return ObjectiveConfig(accuracy="proxy", data=str(cfg.data_path("cifar10")), num_classes=10,
                           img_size=s.img_size, small_input=s.small_input, epochs=s.epochs, batch_size=s.batch_size,
                           lr=s.lr, train_per_class=s.train_per_class or 0, val_per_class=s.val_per_class or 0,
                           runtime=zoo["runtime"], threads=cfg.zoo.threads, latency_size=zoo["input_size"],
                           bn_recalibration=s.bn_recalibration, seed=cfg.seed)


def _trials(study_name: str, storage: str) -> list[dict]:
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=storage)
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        ua = t.user_attrs
        if "skipped" in ua or "accuracy" not in ua:
            continue
        rows.append(dict(number=t.number, accuracy=float(ua["accuracy"]), latency_ms=float(ua["latency_ms"]),
                         params_m=round(float(ua.get("params", 0)) / 1e6, 3),
                         macs_m=round(float(ua.get("macs", 0)) / 1e6, 1)))
    return rows


def run_search(cfg: RunConfig, state: RunState) -> dict:
    """Multi-objective search (accuracy, latency) under the zoo step's budget on CIFAR-10."""
    from carve.search import Objective, SearchConfig, export_spec
    from carve.search import run_search as search
    from carve.zoo import create_model

    from . import plots

    zoo = state.summary("zoo")
    out = state.step_dir("search")
    objective = objective_config(cfg, zoo)
    budget = zoo["budget_ms"] * cfg.search.budget_factor
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    sc = SearchConfig(space=cfg.search.space, objective=objective, study_name=cfg.search.study, storage=storage,
                      out_dir=str(out), trials=cfg.search.trials, seed=cfg.seed, latency_budget_ms=budget, resume=True,
                      progress=True)
    result = search(sc)
    if not result.pareto:
        raise RuntimeError(f"search: no trial of {result.n_complete} met the latency budget of "
                           f"{budget:.2f} ms; raise search.trials or search.budget_factor")
    best_spec = export_spec(result.study_name, result.storage, out=out / "best_spec.json", num_classes=10)
    best = max(result.pareto, key=lambda e: e.accuracy)
    # the strongest hand-designed model scored by the same objective: a reference point on the same axes
    ref_file = out / "reference.json"
    if ref_file.is_file():
        reference = json.loads(ref_file.read_text())
    else:
        spec = create_model(zoo["hand_designed"]).spec
        scored = Objective(objective, out).evaluate(spec, zoo["input_size"], name=f"reference-{zoo['hand_designed']}")
        reference = dict(name=zoo["hand_designed"], accuracy=float(scored["accuracy"]),
                         latency_ms=float(scored["latency_ms"]))
        write_json(ref_file, reference)
    trials = _trials(result.study_name, result.storage)
    write_json(out / "trials.json", trials)
    pareto = [e.as_dict() for e in result.pareto]
    plots.pareto_chart(trials, {e["number"] for e in pareto}, zoo["models"], budget, out / "pareto.png",
                       f"proxy accuracy (CIFAR-10 top-1 %, {cfg.search.epochs} epoch(s))", [reference])
    return dict(study=result.study_name, storage=rel(state, out / "study.db"), space=sc.space,
                n_complete=result.n_complete, n_failed=result.n_failed, budget_ms=round(budget, 3),
                pareto=[{k: v for k, v in e.items() if k != "spec"} for e in pareto], reference=reference,
                best=dict(number=best.number, accuracy=best.accuracy, latency_ms=best.latency_ms,
                          spec=rel(state, out / "best_spec.json"), hash=best_spec.hash()),
                chart=rel(state, out / "pareto.png"), trials=rel(state, out / "trials.json"))
