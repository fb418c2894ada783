"""The run's steps that call the other stages: search, train (finetune and compress in
``late_steps``). Each takes ``(cfg, state)`` and returns its JSON summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .config import RunConfig
from .state import RunState, write_json


def rel(state: RunState, path: str | Path | None) -> str | None:
    """``path`` relative to the run folder (summaries stay valid when the folder moves)."""
    if path is None:
        return None
    path = Path(path).resolve()
    try:
        return path.relative_to(state.root.resolve()).as_posix()
    except ValueError:
        return str(path)


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


def run_search_step(cfg: RunConfig, state: RunState) -> dict:
    """Multi-objective search (accuracy, latency) under the zoo step's budget on CIFAR-10."""
    from carve.search import Objective, SearchConfig, export, run_search
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
    result = run_search(sc)
    if not result.pareto:
        raise RuntimeError(f"search: no trial of {result.n_complete} met the latency budget of "
                           f"{budget:.2f} ms; raise search.trials or search.budget_factor")
    best_spec = export(result.study_name, result.storage, out=out / "best_spec.json", num_classes=10)
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


def run_train_step(cfg: RunConfig, state: RunState) -> dict:
    """Train the best found model and the strongest hand-designed model with the same short recipe."""
    from carve.train import TrainConfig, fit
    from carve.zoo import create_model, load_spec, profile

    from . import plots
    from .latency import measure_many

    zoo, search = state.summary("zoo"), state.summary("search")
    out = state.step_dir("train")
    t = cfg.train
    candidates = {"found": load_spec(state.root / search["best"]["spec"]).replace(name="carve_found"),
                  "hand_designed": create_model(zoo["hand_designed"]).spec}
    models, histories = {}, {}
    for role, spec in candidates.items():
        tc = TrainConfig(model=spec.with_num_classes(10), data=str(cfg.data_path("cifar10")), out_dir=str(out / role),
                         epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, aug=t.aug,
                         img_size=t.img_size, small_input=t.small_input, train_per_class=t.train_per_class or 0,
                         val_per_class=t.val_per_class or 0, seed=cfg.seed, workers=t.workers,
                         warmup_epochs=t.warmup_epochs, cutmix_alpha=t.cutmix, mix_prob=0.5 if t.cutmix else 0.0,
                         bn_recalibration=t.bn_recalibration, resume=(out / role / "last.pt").is_file())
        print(f"[carve run] train: {role} ({spec.name})", file=sys.stderr, flush=True)
        res = fit(tc)
        deploy_spec = spec.with_num_classes(10).save(out / role / "deploy_spec.json")
        prof = profile(create_model(spec.with_num_classes(10)), zoo["input_size"])
        histories[f"{role}: {spec.name}"] = res.history
        models[role] = dict(name=spec.name, top1=round(float(res.final_top1), 2), best_top1=round(float(res.best_top1), 2),
                            params_m=round(prof.params / 1e6, 3), macs_m=round(prof.macs / 1e6, 1),
                            checkpoint=rel(state, res.best_path or res.last_path), spec=rel(state, deploy_spec),
                            wall_s=round(res.wall_s, 1),
                            images_per_s=round(res.images_per_s, 1), epochs=t.epochs)
    # both deployable models timed in one process, interleaved, for their ratio
    deploy = {role: create_model(spec.with_num_classes(10)).eval() for role, spec in candidates.items()}
    timings, engine = measure_many(deploy, zoo["input_size"], zoo["runtime"], cfg.zoo.protocol, cfg.zoo.threads)
    for role, timing in timings.items():
        models[role]["latency_ms"] = round(timing.median_ms, 3)
    ratio = timings["hand_designed"].ratio  # hand-designed latency / found latency = the found model's speed-up
    write_json(out / "histories.json", histories)
    plots.curves_chart(histories, out / "curves.png")
    winner = "found" if models["found"]["top1"] >= models["hand_designed"]["top1"] else "hand_designed"
    return dict(models=models, winner=winner, speedup_found_vs_hand=round(ratio, 3), latency_engine=engine,
                budget_ms=zoo["budget_ms"], chart=rel(state, out / "curves.png"), histories=rel(state, out / "histories.json"))
