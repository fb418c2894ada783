"""Latency of several models on this machine, measured interleaved in one process.

The one place the run measures time: it uses the latency engine (``carve.search.latency``) when it
is installed and a plain interleaved eager timer otherwise; the result names which was used.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@torch.inference_mode()
def _interleaved_eager(models: dict[str, nn.Module], input_size: int, runs: int,
                       threads: int | None, progress=None) -> dict[str, Timing]:
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        x = torch.randn(1, 3, input_size, input_size)
        for m in models.values():
            m.eval()
            for _ in range(3):
                m(x)
        times: dict[str, list[float]] = {n: [] for n in models}
        names = list(models)
        for r in range(runs):
            # rotate the order each round so no model always runs right after the same neighbour
            for name in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                models[name](x)
                times[name].append((time.perf_counter() - t0) * 1e3)
            if progress is not None:
                progress.update(1)
    finally:
        torch.set_num_threads(old_threads)
    return {n: Timing(statistics.median(t), _quantile(t, 0.1), _quantile(t, 0.9), len(t)) for n, t in times.items()}


def engine_available() -> bool:
    try:
        from carve.search.latency import compare  # noqa: F401
    except ImportError:
        return False
    return True


def measure_many(models: dict[str, nn.Module], input_size: int = 224, runtime: str = "eager", runs: int = 30,
                 threads: int | None = None, progress=None) -> tuple[dict[str, Timing], str]:
    """Median/p10/p90 latency (ms, batch 1) of each model, and the name of the engine that timed them."""
    if engine_available():
        from carve.search.latency import compare

        comparison = compare(list(models.values()), names=list(models), input_size=input_size, runtime=runtime,
                             threads=threads, cache=False)
        results = comparison.results
        out = {n: Timing(r.median_ms, r.p10_ms, r.p90_ms, r.runs) for n, r in zip(models, results)}
        if progress is not None:
            progress.update(runs)
        return out, f"carve.search.latency ({runtime})"
    if runtime != "eager":
        raise RuntimeError(f"zoo.runtime={runtime!r} needs the latency engine (carve.search.latency, issue 3), "
                           "which is not installed yet; use zoo.runtime: eager")
    return _interleaved_eager(models, input_size, runs, threads, progress), "interleaved eager timer (carve.run)"
