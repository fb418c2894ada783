"""Per-block latency lookup tables (OFA/FBNet style) and the prediction they give.

A table maps each distinct part configuration (stem, block, head, at its input size) to the
latency measured for that part alone on one device and runtime. A prediction sums the parts and
applies a linear correction fitted on a few fully measured models per input size, for what the
sum misses (operator fusion, cache effects, per-call overhead).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm import tqdm

from carve.zoo import ArchSpec

from .cache import LatencyCache, cache_dir
from .fingerprint import device_fingerprint, fingerprint_key, physical_cores
from .measurement import measure
from .parts import decompose, part_modules
from .protocol import Protocol


@dataclass
class Correction:
    """``measured = a * summed + b * n_parts + d * params_m + c``, least squares on full models.

    ``params_m`` (millions of weights) stands for the memory traffic of weights that are hot in
    cache when a part runs alone and cold when it runs inside the whole network.
    """

    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0
    fitted_on: int = 0

    def apply(self, summed: float, n_parts: int, params_m: float = 0.0) -> float:
        return self.a * summed + self.b * n_parts + self.d * params_m + self.c


@dataclass
class LatencyTable:
    """Part latencies (ms) for one device fingerprint and runtime, plus corrections per input size."""

    fingerprint: dict[str, Any]
    runtime: str = "eager"
    device: str = "cpu"
    batch: int = 1
    threads: int = 1
    entries: dict[str, float] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    corrections: dict[str, Correction] = field(default_factory=dict)
    fit_points: dict[str, list[list[float]]] = field(default_factory=dict)

    # -- storage -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["corrections"] = {k: asdict(v) for k, v in self.corrections.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyTable:
        data = dict(data)
        data["corrections"] = {k: Correction(**v) for k, v in data.get("corrections", {}).items()}
        return cls(**data)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the table as JSON (atomically); default path: one file per device and runtime."""
        path = Path(path) if path is not None else default_table_path(self.fingerprint, self.runtime, self.batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"latency table not found: {path} (build one with build_table)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{path}: not a latency table ({exc})") from exc

    # -- lookup --------------------------------------------------------------------------------
    def missing(self, spec: ArchSpec, input_size: int) -> list[str]:
        return [p.key for p in decompose(spec, input_size, self.batch) if p.key not in self.entries]

    def summed(self, spec: ArchSpec, input_size: int) -> tuple[float, int, float]:
        """Sum of the part latencies of ``spec``, the number of parts and their weights (millions)."""
        parts = decompose(spec, input_size, self.batch)
        absent = [p.key for p in parts if p.key not in self.entries]
        if absent:
            raise KeyError(f"latency table lacks {len(absent)} of {len(parts)} parts of {spec.name!r} at "
                           f"{input_size} px (first: {absent[0]}); extend it with build_table([spec], table=table) or `carve latency predict --extend`")
        params_m = sum(self.params.get(p.key, 0) for p in parts) / 1e6
        return sum(self.entries[p.key] for p in parts), len(parts), params_m

    def correction(self, input_size: int) -> Correction:
        return self.corrections.get(str(input_size)) or self.corrections.get("all") or Correction()


def default_table_path(fingerprint: dict[str, Any], runtime: str, batch: int = 1) -> Path:
    return cache_dir() / "tables" / f"{fingerprint_key(fingerprint)}_{runtime}_b{batch}.json"


def predict(spec: ArchSpec, table: LatencyTable, input_size: int = 224) -> float:
    """Predicted latency (ms) of ``spec`` at ``input_size``: corrected sum of its parts' latencies."""
    return table.correction(input_size).apply(*table.summed(spec, input_size))


def fit_correction(points: Sequence[Sequence[float]]) -> Correction:
    """Least-squares fit from ``[summed, n_parts, params_m, measured]`` points.

    All four terms from 8 points on; scale, per-part and offset from 6; scale and offset from 3;
    with one or two points a scale alone.
    """
    import numpy as np

    if not points:
        return Correction()
    p = np.asarray(points, dtype=float)
    s, n, w, y = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    one = np.ones_like(s)
    if len(p) >= 8 and np.ptp(n) > 0 and np.ptp(w) > 0:
        (a, b, d, c), *_ = np.linalg.lstsq(np.stack([s, n, w, one], 1), y, rcond=None)
        return Correction(float(a), float(b), float(c), float(d), len(p))
    if len(p) >= 6 and np.ptp(n) > 0:
        (a, b, c), *_ = np.linalg.lstsq(np.stack([s, n, one], 1), y, rcond=None)
        return Correction(float(a), float(b), float(c), 0.0, len(p))
    if len(p) >= 3 and np.ptp(s) > 0:
        (a, c), *_ = np.linalg.lstsq(np.stack([s, one], 1), y, rcond=None)
        return Correction(float(a), 0.0, float(c), 0.0, len(p))
    return Correction(float(np.mean(y / s)), fitted_on=len(p))


def sample_specs(space: Any, n: int, seed: int = 0) -> list[ArchSpec]:
    """``n`` specs from a search space: ``.sample_random(rng)`` (carve.search.spaces), else
    ``.sample(rng)``, else ``.sample(optuna_trial)`` from a random-sampler study."""
    rng = random.Random(seed)
    if hasattr(space, "sample_random"):
        return [space.sample_random(rng)[0] for _ in range(n)]
    try:
        return [space.sample(rng) for _ in range(n)]
    except (TypeError, AttributeError):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        return [space.sample(study.ask()) for _ in range(n)]


def build_table(space_or_specs: Any, input_sizes: int | Iterable[int] = 224, runtime: str = "eager",
                device: str = "cpu", batch: int = 1, threads: int | None = None, samples: int = 200,
                fit_models: int = 8, seed: int = 0, cache: bool | str | Path | LatencyCache | None = True,
                protocol: Protocol | None = None, table: LatencyTable | None = None,
                save: bool | str | Path = True, progress: bool = True) -> LatencyTable:
    """Measure every part the specs (or ``samples`` draws from a space) contain and not yet in ``table``.

    Then fit the correction per input size on ``fit_models`` of the specs measured whole. Parts
    and models go through the measurement cache, so rebuilding is cheap. Saved per device unless
    ``save`` is False (a path saves there).
    """
    threads = threads or physical_cores()
    sizes = [input_sizes] if isinstance(input_sizes, int) else list(input_sizes)
    if isinstance(space_or_specs, (list, tuple)):
        specs = list(space_or_specs)
    else:
        specs = sample_specs(space_or_specs, samples, seed)
    if not specs:
        raise ValueError("space_or_specs: no specs to build a table from")
    if table is None:
        table = LatencyTable(device_fingerprint(device, threads, runtime), runtime, device, batch, threads)
    elif (table.runtime, table.device, table.batch, table.threads) != (runtime, device, batch, threads):
        raise ValueError(f"table: built for {table.runtime}/{table.device}/batch {table.batch}/"
                         f"{table.threads} threads, asked for {runtime}/{device}/batch {batch}/{threads} threads")
    kw = dict(device=device, batch=batch, threads=threads, runtime=runtime, cache=cache, protocol=protocol)
    todo = [(spec, size) for size in sizes for spec in specs if table.missing(spec, size)]
    bar = tqdm(todo, desc="latency table", unit="spec", disable=not progress or not todo)
    for spec, size in bar:
        parts = decompose(spec, size, batch)
        if all(p.key in table.entries for p in parts):
            continue
        for part, module in zip(parts, part_modules(spec)):
            if part.key not in table.entries:
                r = measure(module, input_size=part.feature_size, key=part.short_key, in_channels=part.in_channels,
                            **kw)
                table.entries[part.key] = r.median_ms
                table.params[part.key] = sum(t.numel() for t in module.parameters())
        bar.set_postfix(parts=len(table.entries))
    for size in sizes:
        points = table.fit_points.setdefault(str(size), [])
        for spec in specs[:max(0, fit_models - len(points))]:
            points.append([*table.summed(spec, size), measure(spec, input_size=size, **kw).median_ms])
        table.corrections[str(size)] = fit_correction(points)
    if save:
        table.save(None if save is True else save)
    return table
