"""The run's search step: a multi-objective study under the zoo step's budget."""

from __future__ import annotations

from dataclasses import replace

from carve.files import write_json

from .config import RunConfig
from .state import RunState, rel


def run_search(cfg: RunConfig, state: RunState) -> dict:
    """Multi-objective search (accuracy, latency) under the zoo step's budget."""
    from carve.search import export_spec, get_space
    from carve.train.data import class_names
    from carve.search import run_search as search
    from carve.search.plot import plot_study
    from carve.search.references import score_references
    from carve.search.storage import load_study
    from carve.search.trials import trial_rows

    zoo = state.summary("zoo")
    out = state.step_dir("search")
    s = cfg.search
    data = str(cfg.data_path("classify"))
    num_classes = len(class_names(data))
    inherit_from = None
    if s.supernet is None and s.objective.accuracy == "inherited":  # candidates start from the shipped weights of the space's base
        inherit_from = f"{get_space(s.space).base}@{cfg.pretrained}"
    objective = replace(s.objective, data=data, num_classes=num_classes, runtime=zoo["runtime"],
                        threads=cfg.zoo.threads, latency_size=zoo["input_size"], seed=cfg.seed,
                        inherit_from=inherit_from)
    budget = zoo["budget_ms"] * s.budget_factor
    # a supernet's resolution choice is the deploy resolution: candidates are timed there
    resolution = s.resolution or (zoo["input_size"] if s.supernet else None)
    warm_start = s.warm_start or (zoo_starting_points(zoo, budget) if s.supernet else ())
    sc = replace(s, objective=objective, out_dir=str(out), latency_budget_ms=budget, resume=True, seed=cfg.seed,
                 progress=True, resolution=resolution, warm_start=warm_start)
    result = search(sc)
    if not result.pareto:
        raise RuntimeError(f"search: no trial of {result.n_complete} met the latency budget of "
                           f"{budget:.2f} ms; raise search.trials or search.budget_factor")
    best_spec = export_spec(result.study_name, result.storage, out=out / "best_spec.json", num_classes=num_classes)
    best = max(result.pareto, key=lambda e: e.accuracy)
    study = load_study(result.study_name, result.storage)
    # the strongest hand-designed model scored by the same objective: a reference point on the same axes
    hand = zoo["hand_designed"]
    reference = dict(name=hand, **score_references(study, [hand], out)[hand])
    trials = trial_rows(study)
    write_json(out / "trials.json", trials)
    plot_study(study, out / "pareto.png", {hand: reference}, budget,
               title="Search: accuracy vs latency (green lines: zoo models' latency)",
               zoo_latency={r["name"]: r["latency_ms"] for r in zoo["models"]},
               accuracy_label=f"accuracy estimate ({sc.objective.accuracy}: held-out top-1 %)")
    pareto = [e.as_dict() for e in result.pareto]
    storage = sc.storage_url.removeprefix("sqlite:///")
    space = sc.load_space().name if sc.supernet else sc.space
    return dict(study=result.study_name, storage=rel(state, storage), space=space, inherit_from=inherit_from,
                supernet=s.supernet, estimator=sc.objective.accuracy, num_classes=num_classes,
                warm_start=list(warm_start),
                n_complete=result.n_complete, n_failed=result.n_failed, budget_ms=round(budget, 3),
                pareto=[{k: v for k, v in e.items() if k != "spec"} for e in pareto], reference=reference,
                best=dict(number=best.number, accuracy=best.accuracy, latency_ms=best.latency_ms,
                          spec=rel(state, out / "best_spec.json"), hash=best_spec.hash()),
                chart=rel(state, out / "pareto.png"), trials=rel(state, out / "trials.json"))


def zoo_starting_points(zoo: dict, budget_ms: float) -> tuple[str, ...]:
    """The zoo step's carve models within the budget: sub-networks of the shipped supernet, so a search
    over it that starts from their nearest points starts where the hand design is."""
    return tuple(r["name"] for r in zoo["models"] if r["family"] == "carve" and r["latency_ms"] <= budget_ms)
