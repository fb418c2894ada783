"""Latency of several models on this machine, timed interleaved in one process by the latency
engine (``carve.search.latency.compare``): the one place the run measures time."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    ratio: float


def measure_many(models: dict[str, nn.Module], input_size: int = 224, runtime: str = "eager",
                 protocol: str = "full", threads: int | None = None) -> tuple[dict[str, Timing], str]:
    """Median/p10/p90 latency (ms, batch 1) of each model, ratio to the first, and a description of
    how they were timed. ``protocol``: "full" (the engine's default) or "quick" (smoke runs)."""
    from carve.search.latency import QUICK, Protocol, compare

    proto = QUICK if protocol == "quick" else Protocol()
    comparison = compare(list(models.values()), names=list(models), input_size=input_size, runtime=runtime,
                         threads=threads, protocol=proto)
    out = {n: Timing(r.median_ms, r.p10_ms, r.p90_ms, r.runs, q)
           for n, r, q in zip(models, comparison.results, comparison.ratios)}
    return out, f"latency engine (carve.search.latency.compare, {runtime}, {protocol} protocol, interleaved)"
