"""The Ray backend: trials run as Ray Tune trials, Optuna (OptunaSearch) proposes them.

Local Ray by default (``ray.init(num_cpus=..., include_dashboard=False)``), ``address`` for an
existing cluster; trials are placed by their CPU resources alone, so they spread over every node, and
each records the node it ran on (``ray_node``); ASHA stops weak proxy-training runs early (one rung
per reported epoch). Every finished Ray trial is copied into the Optuna study in the storage, so
``show``, ``plot`` and ``export`` read Ray and Optuna searches alike.
"""

from __future__ import annotations

import math
import socket
import threading
from pathlib import Path
from typing import Any

import optuna

from .objective import Objective
from .spaces import FixedParams, SearchSpace
from .candidate import evaluate_candidate
from .config import SearchConfig
from .storage import count_states, create_or_load_study, make_sampler, warm_start_params


class _Recorder(FixedParams):
    """Decodes params and remembers each choice's distribution (to rebuild an Optuna trial)."""

    def __init__(self, params: dict[str, Any]):
        super().__init__(params)
        self.distributions: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        from optuna.distributions import CategoricalDistribution

        self.distributions[name] = CategoricalDistribution(list(choices))
        return super().suggest_categorical(name, choices)


class _Define:
    """Define-by-run space for OptunaSearch (a picklable callable: Tune checkpoints its searcher)."""

    def __init__(self, space: SearchSpace):
        self.space = space

    def __call__(self, trial: Any) -> None:
        self.space.sample(trial)


def node_info() -> dict[str, str]:
    """The Ray node this process runs on: its node id, IP address and host name."""
    import ray

    return {"id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
            "host": socket.gethostname()}


def _trainable(config: dict[str, Any], cfg: SearchConfig, space: SearchSpace) -> None:
    from ray import tune

    spec, res = space.decode(config)
    attrs: dict[str, Any] = {"ray_node": node_info()}
    constraints: dict[str, float] = {}
    objective = Objective(cfg.objective, cfg.out_dir)
    latency = [float("nan")]

    def report(epoch: int, acc: float) -> None:
        if math.isfinite(latency[0]):
            tune.report({"accuracy": acc, "latency_ms": latency[0], "epoch": epoch, "final": 0,
                         "attrs": dict(attrs), "constraints": dict(constraints)})

    def set_attr(k: str, v: Any) -> None:
        attrs[k] = v
        if k == "latency_ms":
            latency[0] = float(v)

    acc, lat = evaluate_candidate(cfg, objective, spec, res, f"{cfg.name}-ray-{tune.get_context().get_trial_id()}",
                                  set_attr, constraints.__setitem__, report if cfg.asha else None)
    tune.report({"accuracy": acc, "latency_ms": lat, "final": 1, "attrs": attrs, "constraints": constraints})


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that pickles without its thread lock (Optuna 5's genetic samplers hold one, and Ray
    pickles the searcher); an unpickled copy gets a fresh lock."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_thread_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def _picklable(sampler: Any) -> Any:
    if type(sampler) is not optuna.samplers.NSGAIISampler:
        return sampler
    out = PicklableNSGAIISampler.__new__(PicklableNSGAIISampler)
    out.__dict__.update(vars(sampler))  # the same sampler state
    out._thread_lock = threading.Lock()
    return out


def run_ray(cfg: SearchConfig) -> Any:
    """Run the remaining trials through Ray Tune; returns the Optuna study that records them."""
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    space = cfg.load_space()
    study = create_or_load_study(cfg, space)
    done, _ = count_states(study)
    remaining = cfg.trials - done
    if remaining <= 0:
        return study
    if not ray.is_initialized():
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=cfg.ray_num_cpus, include_dashboard=False, log_to_driver=False)

    population = cfg.population or max(4, min(50, cfg.trials // 4))
    searcher = OptunaSearch(space=_Define(space), metric=["accuracy", "latency_ms"], mode=["max", "min"],
                            sampler=_picklable(make_sampler(cfg.sampler, cfg.seed, population, False)),
                            points_to_evaluate=warm_start_params(cfg, space) if done == 0 else None)
    scheduler = None
    if cfg.asha and cfg.objective.accuracy == "proxy" and cfg.objective.epochs > 1:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(metric="accuracy", mode="max", time_attr="training_iteration",
                                  max_t=cfg.objective.epochs + 1, grace_period=1, reduction_factor=2)
    cpus = ray.cluster_resources().get("CPU", cfg.ray_num_cpus)  # every node's, on a cluster
    concurrent = max(1, int(cpus // max(cfg.cpus_per_trial, 1e-6)))
    trainable = tune.with_resources(tune.with_parameters(_trainable, cfg=cfg, space=space),
                                    {"cpu": cfg.cpus_per_trial})
    storage_path = (Path(cfg.out_dir) / "ray").resolve()
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining,
                                    max_concurrent_trials=concurrent, reuse_actors=cfg.reuse_actors),
        run_config=tune.RunConfig(name=cfg.name, storage_path=str(storage_path), verbose=0),
    )
    results = tuner.fit()
    for result in results:
        _record(study, space, result)
    return study


def _record(study: Any, space: SearchSpace, result: Any) -> None:
    """Copy one Ray trial into the Optuna study (COMPLETE with metrics, or FAIL with its error)."""
    from optuna.trial import TrialState, create_trial

    params = {k: v for k, v in (result.config or {}).items()}
    rec = _Recorder(params)
    try:
        space.sample(rec)
    except ValueError:
        return
    params = {k: params[k] for k in rec.distributions}
    metrics = result.metrics or {}
    if result.error is not None or "accuracy" not in metrics:
        error = f"{type(result.error).__name__}: {result.error}"[:2000] if result.error else "no result reported"
        study.add_trial(create_trial(state=TrialState.FAIL, params=params, distributions=rec.distributions,
                                     user_attrs={"error": error, "backend": "ray"}))
        return
    attrs = dict(metrics.get("attrs") or {})
    attrs.update(backend="ray", ray_trial_id=metrics.get("trial_id"))
    if not metrics.get("final"):
        attrs["asha_stopped_at_epoch"] = metrics.get("epoch")
        attrs.setdefault("accuracy", metrics["accuracy"])
        attrs.setdefault("latency_ms", metrics["latency_ms"])
    system = {f"constraints:{k}": float(v) for k, v in (metrics.get("constraints") or {}).items()}
    values = [float(metrics["accuracy"]), float(metrics["latency_ms"])][: len(study.directions)]
    study.add_trial(create_trial(state=TrialState.COMPLETE, params=params, distributions=rec.distributions,
                                 values=values, user_attrs=attrs, system_attrs=system))
