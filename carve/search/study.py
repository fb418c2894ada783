"""The Optuna engine: run (or resume) a seeded, multi-objective study in this process and its workers."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from carve.files import writable_dir, write_json

from .candidate import evaluate_candidate
from .config import SearchConfig, SearchResult
from .objective import Objective, check_inputs
from .pareto import pareto_entries
from .storage import _has_set_constraint, count_states, create_or_load_study


def optimize(cfg: SearchConfig, worker: int = 0, study: Any = None) -> Any:
    """Run trials in this process until the study holds ``cfg.trials`` complete ones (or timeout)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = cfg.load_space()
    study = study if study is not None else create_or_load_study(cfg, space, worker)
    objective = Objective(cfg.objective, cfg.out_dir)
    values_single = len(study.directions) == 1

    def trial_fn(trial: optuna.Trial) -> Any:
        spec = space.sample(trial)
        res = space.sample_resolution(trial)
        constraints: dict[str, float] = {}
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")

        def set_constraint(k: str, v: float) -> None:
            constraints[k] = v
            if _has_set_constraint():
                trial.set_constraint(k, v)
            else:
                trial.set_user_attr("constraints", constraints)

        acc, lat = evaluate_candidate(cfg, objective, spec, res, f"{cfg.name}-{trial.number}", trial.set_user_attr,
                                      set_constraint)
        return acc if values_single else (acc, lat)

    done, failed = count_states(study)
    if done >= cfg.trials:
        return study
    bar = _progress(cfg, done)

    def stop_when_done(st: optuna.Study, _t: Any) -> None:
        n_done, n_failed = count_states(st)
        if bar is not None:
            bar.n = n_done
            bar.set_postfix(failed=n_failed)
            bar.refresh()
        if n_done >= cfg.trials or n_failed - failed >= max(3 * cfg.trials, 10):
            st.stop()

    study.optimize(trial_fn, n_trials=None if cfg.timeout_s else cfg.trials * 10, timeout=cfg.timeout_s,
                   catch=(Exception,), callbacks=[stop_when_done],
                   gc_after_trial=cfg.objective.accuracy == "proxy")
    if bar is not None:
        bar.close()
    return study


def _progress(cfg: SearchConfig, done: int) -> Any:
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.trials, initial=done, desc=f"search {cfg.name}", unit="trial")


def _worker_main(cfg_dict: dict[str, Any], worker: int) -> None:
    cfg = SearchConfig.from_dict(cfg_dict)
    cfg.resume, cfg.progress = True, False
    optimize(cfg, worker)


def run_search(cfg: SearchConfig) -> SearchResult:
    """Run (or resume) a search, re-measure the Pareto set and write ``pareto.json``.

    The inputs every trial reads are checked first (``objective.check_inputs``); a study left with
    no completed trial raises ``RuntimeError`` with the first failure's reason."""
    writable_dir(cfg.out_dir)
    cfg.load_space()  # a bad space file is named first
    check_inputs(cfg.objective)
    if cfg.backend == "ray":
        from .ray_backend import run_ray

        study = run_ray(cfg)
    else:
        study = create_or_load_study(cfg, cfg.load_space())  # fails on an existing study without resume
        procs = []
        if cfg.workers > 1:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            for w in range(1, cfg.workers):
                p = ctx.Process(target=_worker_main, args=(cfg.to_dict(), w), daemon=False)
                p.start()
                procs.append(p)
        study = optimize(cfg, 0, study)
        for p in procs:
            p.join()
    result = finish(cfg, study)
    if result.n_complete == 0 and result.n_failed:
        raise RuntimeError(f"search {cfg.name}: no trial completed ({result.n_failed} failed); the first "
                           f"failure: {first_failure(study)}")
    return result


def first_failure(study: Any) -> str:
    """The error of the study's first failed trial (as the trial recorded it)."""
    from optuna.trial import TrialState

    failed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    if not failed:
        return "none"
    trial = min(failed, key=lambda t: t.number)
    return trial.user_attrs.get("error") or f"trial {trial.number} recorded no error (carve search show --all)"


def finish(cfg: SearchConfig, study: Any) -> SearchResult:
    """Re-measure the Pareto set's latency (measured or predicted by a table during the search: then in
    the table's runtime, here), store it on the study and write pareto.json."""
    entries = pareto_entries(study)
    if cfg.remeasure and cfg.objective.latency in ("measure", "predict"):
        from dataclasses import replace

        from .objective import measure_latency
        from carve.zoo import parse_spec

        objective = replace(cfg.objective, latency="measure")
        remeasured = dict(study.user_attrs.get("remeasured_ms", {}))
        for e in entries:
            spec = parse_spec(e.spec).with_num_classes(cfg.objective.num_classes)
            e.remeasured_ms = measure_latency(spec, e.resolution, objective, remeasure=True)
            remeasured[str(e.number)] = e.remeasured_ms
        study.set_user_attr("remeasured_ms", remeasured)
    done, failed = count_states(study)
    result = SearchResult(cfg.name, cfg.storage_url, entries, done, failed, Path(cfg.out_dir), cfg.backend)
    write_json(Path(cfg.out_dir) / f"{cfg.name}-pareto.json", result.as_dict())
    return result
