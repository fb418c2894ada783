"""The Optuna engine: a seeded, resumable, multi-objective study over a search space.

Studies live in an RDB storage (a SQLite file under the run folder by default, PostgreSQL across
machines) with heartbeats, so a killed worker's running trial is marked failed when the study is
resumed and every finished trial is kept. Several workers may share one study by name.
"""

from __future__ import annotations

import json
import warnings
import math
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .objective import Objective, ObjectiveConfig
from .pareto import ParetoEntry, pareto_entries
from .spaces import SearchSpace, get_space

SAMPLERS = ("nsga2", "tpe", "gp", "random")
BACKENDS = ("optuna", "ray")
ATTR = "carve"  # study user attr holding the search's space and objective config



@dataclass
class SearchConfig:
    """One search. Budgets are upper bounds (latency in ms, MACs and params as counts).

    ``warm_start``: zoo names or spec files whose nearest points in the space are the new study's
    first trials (``SearchSpace.nearest``), so the search starts from known architectures.
    """

    space: str = "mbconv"
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    study_name: str | None = None
    storage: str | None = None
    out_dir: str = "runs/search"
    trials: int = 20
    timeout_s: float | None = None
    sampler: str = "nsga2"
    population: int | None = None
    seed: int = 0
    latency_budget_ms: float | None = None
    macs_budget: float | None = None
    params_budget: float | None = None
    skip_infeasible: bool = True
    resolution: int | None = None
    resume: bool = False
    workers: int = 1
    remeasure: bool = True
    backend: str = "optuna"
    ray_address: str | None = None
    ray_num_cpus: int = 2
    cpus_per_trial: float = 1.0
    asha: bool = True
    progress: bool = True
    heartbeat_s: int = 5
    warm_start: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, got {self.sampler!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {self.backend!r}")
        if self.trials < 1:
            raise ValueError(f"trials: must be >= 1, got {self.trials}")
        for name in ("latency_budget_ms", "macs_budget", "params_budget"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}: must be positive, got {value!r}")
        if isinstance(self.objective, dict):
            self.objective = ObjectiveConfig(**self.objective)

    @property
    def name(self) -> str:
        return self.study_name or f"{Path(str(self.space)).stem}-{self.objective.accuracy}"

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(Path(self.out_dir) / 'studies.db').resolve()}"

    def load_space(self) -> SearchSpace:
        space = get_space(self.space)
        return space.with_resolution(self.resolution) if self.resolution else space

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objective"] = self.objective.as_dict()
        return d


@dataclass
class SearchResult:
    study_name: str
    storage: str
    pareto: list[ParetoEntry]
    n_complete: int
    n_failed: int
    out_dir: Path
    backend: str = "optuna"

    def as_dict(self) -> dict[str, Any]:
        return dict(study_name=self.study_name, storage=self.storage, backend=self.backend,
                    n_complete=self.n_complete, n_failed=self.n_failed, out_dir=str(self.out_dir),
                    pareto=[e.as_dict() for e in self.pareto])


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


def _study_attrs(cfg: SearchConfig, space: SearchSpace) -> dict[str, Any]:
    return dict(space=str(cfg.space), resolution=cfg.resolution, objective=cfg.objective.as_dict(),
                budgets=dict(latency_ms=cfg.latency_budget_ms, macs=cfg.macs_budget, params=cfg.params_budget),
                space_name=space.name)


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
    cfg = SearchConfig(**cfg_dict)
    cfg.resume, cfg.progress = True, False
    optimize(cfg, worker)


def run_search(cfg: SearchConfig) -> SearchResult:
    """Run (or resume) a search, re-measure the Pareto set and write ``pareto.json``."""
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
                p = ctx.Process(target=_worker_main, args=(cfg.as_dict(), w), daemon=False)
                p.start()
                procs.append(p)
        study = optimize(cfg, 0, study)
        for p in procs:
            p.join()
    return finish(cfg, study)


def finish(cfg: SearchConfig, study: Any) -> SearchResult:
    """Re-measure the Pareto set's latency, store it on the study and write pareto.json."""
    entries = pareto_entries(study)
    if cfg.remeasure and cfg.objective.latency == "measure":
        from .objective import measure_latency
        from carve.zoo import parse_spec

        remeasured = dict(study.user_attrs.get("remeasured_ms", {}))
        for e in entries:
            spec = parse_spec(e.spec).with_num_classes(cfg.objective.num_classes)
            e.remeasured_ms = measure_latency(spec, e.resolution, cfg.objective, remeasure=True)
            remeasured[str(e.number)] = e.remeasured_ms
        study.set_user_attr("remeasured_ms", remeasured)
    done, failed = count_states(study)
    result = SearchResult(cfg.name, cfg.storage_url, entries, done, failed, Path(cfg.out_dir), cfg.backend)
    write_json(Path(cfg.out_dir) / f"{cfg.name}-pareto.json", result.as_dict())
    return result


def write_json(path: Path, data: Any) -> Path:
    """Atomic JSON write (tmp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
    return path
