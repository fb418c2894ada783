"""Studies in an RDB storage: opening it, creating or resuming a study, samplers, warm start, counts.

Studies live in an RDB storage (a SQLite file under the run folder by default, PostgreSQL across
machines) with heartbeats, so a killed worker's running trial is marked failed when the study is
resumed and every finished trial is kept. Several workers may share one study by name.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .config import SearchConfig
from .spaces import SearchSpace

ATTR = "carve"  # study user attr holding the search's space and objective config


def open_storage(url: str, heartbeat_s: int = 5) -> Any:
    """An RDB storage with heartbeats (stale running trials of killed workers become FAIL after
    three missed beats)."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s,
                                         grace_period=3 * heartbeat_s)


def make_sampler(name: str, seed: int, population: int, constrained: bool) -> Any:
    import optuna

    cf = None if _has_set_constraint() or not constrained else _constraints_from_attrs
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed, constraints_func=cf)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constraints_func=cf)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, constraints_func=cf)
    return optuna.samplers.RandomSampler(seed=seed)


def _has_set_constraint() -> bool:
    import optuna

    return hasattr(optuna.trial.Trial, "set_constraint")


def _constraints_from_attrs(trial: Any) -> list[float]:
    return list(trial.user_attrs.get("constraints", {}).values())


def _study_attrs(cfg: SearchConfig, space: SearchSpace) -> dict[str, Any]:
    return dict(space=str(cfg.space), resolution=cfg.resolution, objective=cfg.objective.to_dict(),
                budgets=dict(latency_ms=cfg.latency_budget_ms, macs=cfg.macs_budget, params=cfg.params_budget),
                space_name=space.name, supernet=getattr(cfg, "supernet", None))


def create_or_load_study(cfg: SearchConfig, space: SearchSpace, worker: int = 0) -> Any:
    """Create the study, or load it when ``cfg.resume`` (error if it exists and resume is off)."""
    import optuna

    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    storage = open_storage(cfg.storage_url, cfg.heartbeat_s)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if cfg.name in names and not cfg.resume:
        raise ValueError(f"study {cfg.name!r} already exists in {cfg.storage_url}; pass --resume to continue it "
                         f"or --study-name for a new one")
    population = cfg.population or max(4, min(50, cfg.trials // 4))
    constrained = any(b is not None for b in (cfg.latency_budget_ms, cfg.macs_budget, cfg.params_budget))
    # A resumed study's sampler must not replay the seed's first draws: those are the finished trials.
    done = 0
    if cfg.name in names:
        done = len(optuna.load_study(study_name=cfg.name, storage=storage).get_trials(deepcopy=False))
    sampler = make_sampler(cfg.sampler, cfg.seed + worker + 1000 * done, population, constrained)
    directions = ["maximize", "minimize"] if cfg.objective.latency != "none" else ["maximize"]
    study = optuna.create_study(study_name=cfg.name, storage=storage, sampler=sampler, directions=directions,
                                load_if_exists=True)
    if ATTR not in study.user_attrs:
        study.set_user_attr(ATTR, _study_attrs(cfg, space))
    if done == 0 and worker == 0 and cfg.backend == "optuna":  # Ray's searcher takes them itself
        for params in warm_start_params(cfg, space):
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def warm_start_params(cfg: SearchConfig, space: SearchSpace) -> list[dict[str, Any]]:
    """The params of the space's points nearest to ``cfg.warm_start``'s architectures."""
    from carve.zoo import resolve_spec

    out = []
    for i, item in enumerate(cfg.warm_start):
        try:
            spec = resolve_spec(item)[0]
        except (KeyError, FileNotFoundError, ValueError) as exc:
            raise ValueError(f"warm_start[{i}]: {exc}") from exc
        out.append(space.nearest(spec, cfg.resolution))
    return out


def count_states(study: Any) -> tuple[int, int]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return (sum(t.state == TrialState.COMPLETE for t in trials), sum(t.state == TrialState.FAIL for t in trials))


def load_study(study_name: str, storage: str) -> Any:
    """Load an existing study; the error lists the studies that do exist."""
    import optuna

    st = open_storage(storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(st)]
    if study_name not in names:
        raise KeyError(f"study {study_name!r} not found in {storage}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=st)
