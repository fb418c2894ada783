"""``SearchConfig`` (one search: space, objective, budgets, engine) and what a search returns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from carve.config import Config, setting

from .objective import ObjectiveConfig
from .pareto import ParetoEntry
from .spaces import SearchSpace, SupernetSpace, get_space

SAMPLERS = ("nsga2", "tpe", "gp", "random")
BACKENDS = ("optuna", "ray")


@dataclass
class SearchConfig(Config):
    """One search. Budgets are upper bounds (latency in ms, MACs and params as counts)."""

    space: str = setting("mbconv", help="built-in space (mbconv, carve, shuffle, mnv4) or a .yaml/.json file")
    objective: ObjectiveConfig = setting(default_factory=ObjectiveConfig, help="how candidates are scored")
    study_name: str | None = setting(None, help="default: SPACE-ACCURACY")
    storage: str | None = setting(None, help="Optuna storage URL (default: sqlite file in out_dir)")
    out_dir: str = setting("runs/search", help="run folder")
    trials: int = setting(20, ">= 1", help="complete trials the study should hold")
    timeout_s: float | None = setting(None, "positive", help="wall budget in seconds for this run")
    sampler: str = setting("nsga2", choices=SAMPLERS, help="Optuna sampler")
    population: int | None = setting(None, ">= 1", help="NSGA-II population (default: from trials)")
    seed: int = setting(0, help="random seed")
    latency_budget_ms: float | None = setting(None, "positive", help="latency budget in ms, e.g. 12ms")
    macs_budget: float | None = setting(None, "positive", help="MACs budget, e.g. 300M")
    params_budget: float | None = setting(None, "positive", help="parameter budget, e.g. 5M")
    skip_infeasible: bool = setting(True, help="skip the accuracy estimate of candidates over a budget")
    resolution: int | None = setting(None, ">= 8", help="fix the input resolution (else searched)")
    resume: bool = setting(False, help="continue an existing study of the same name")
    workers: int = setting(1, ">= 1", help="worker processes on this machine sharing the study")
    remeasure: bool = setting(True, help="re-measure the Pareto set's latency at the end (also when the search "
                                         "predicted it from a latency table)")
    backend: str = setting("optuna", choices=BACKENDS, help="search engine")
    ray_address: str | None = setting(None, help="Ray cluster address (default: local Ray)")
    ray_num_cpus: int = setting(2, ">= 1", help="CPUs of a local Ray")
    cpus_per_trial: float = setting(1.0, "positive", help="Ray CPUs per trial")
    asha: bool = setting(True, help="Ray: ASHA early stopping of proxy training")
    reuse_actors: bool = setting(True, help="Ray: a finished trial's worker process runs the next trial (off: "
                                            "each trial starts its own, placed by its CPUs on any node)")
    progress: bool = setting(True, help="progress bar")
    heartbeat_s: int = setting(5, ">= 1", help="Optuna heartbeat interval (failed-worker detection)")
    warm_start: tuple[str, ...] = setting((), help="zoo names or spec files: the space's nearest points to "
                                                   "them are the first trials")
    supernet: str | None = setting(None, help="a supernet weights file or tag (carve:tiny-imagenet): search its "
                                              "sub-networks, scored with its weights (implies --objective supernet)")

    def check(self) -> None:
        if self.supernet is None:
            return
        if self.objective.accuracy not in ("proxy", "supernet"):
            raise self.error("objective.accuracy", f"a search over a supernet scores candidates with its weights "
                                                   f"(supernet), not {self.objective.accuracy!r}")
        self.objective.accuracy, self.objective.supernet = "supernet", self.supernet

    @property
    def name(self) -> str:
        if self.study_name:
            return self.study_name
        if self.supernet:
            return f"supernet_{Path(self.supernet.rpartition(':')[2]).stem}-{self.objective.accuracy}"
        return f"{Path(str(self.space)).stem}-{self.objective.accuracy}"

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(Path(self.out_dir) / 'studies.db').resolve()}"

    def load_space(self) -> SearchSpace | SupernetSpace:
        if self.supernet:
            space = get_space(self.space) if Path(str(self.space)).suffix in (".yaml", ".yml", ".json") else None
            if not isinstance(space, SupernetSpace):
                space = SupernetSpace(name=f"supernet_{Path(self.supernet.rpartition(':')[2]).stem}",
                                      supernet=self.supernet)
            space = replace(space, supernet=self.supernet)
        else:
            space = get_space(self.space)
        return space.with_resolution(self.resolution) if self.resolution else space


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
