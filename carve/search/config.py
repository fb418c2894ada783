"""``SearchConfig`` (one search: space, objective, budgets, engine) and what a search returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .objective import ObjectiveConfig
from .pareto import ParetoEntry
from .spaces import SearchSpace, get_space

SAMPLERS = ("nsga2", "tpe", "gp", "random")
BACKENDS = ("optuna", "ray")


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
