"""Latency of several models on this machine, by the latency engine: the one place the run
measures time. ``measure_each`` times models one after the other exactly as the search times its
candidates (so the zoo's budget and the search's figures are comparable); ``measure_many``
interleaves a few models in one process for their ratios."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

PROTOCOLS = ("full", "quick")  # the latency engine's default protocol, or its short one (smoke runs)


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    ratio: float


def _protocol(protocol: str):
    from carve.latency import QUICK, Protocol

    return QUICK if protocol == "quick" else Protocol()


def measure_each(models: dict[str, nn.Module], input_size: int = 224, runtime: str = "eager",
                 protocol: str = "full", threads: int | None = None) -> tuple[dict[str, Timing], str]:
    """Median/p10/p90 latency (ms, batch 1) of each model measured on its own (``measure``, no
    cache), ratio to the first, and a description of how they were timed."""
    from tqdm import tqdm

    from carve.latency import measure

    proto = _protocol(protocol)
    results = {name: measure(model, input_size=input_size, runtime=runtime, threads=threads, protocol=proto,
                             cache=False)
               for name, model in tqdm(models.items(), desc="zoo: latency", unit="model")}
    first = next(iter(results.values())).median_ms
    out = {n: Timing(r.median_ms, r.p10_ms, r.p90_ms, r.runs, r.median_ms / first) for n, r in results.items()}
    return out, f"latency engine (carve.latency.measure, {runtime}, {protocol} protocol, one model at a time)"


def measure_many(models: dict[str, nn.Module], input_size: int = 224, runtime: str = "eager",
                 protocol: str = "full", threads: int | None = None) -> tuple[dict[str, Timing], str]:
    """Median/p10/p90 latency (ms, batch 1) of each model, ratio to the first, and a description of
    how they were timed. ``protocol``: "full" (the engine's default) or "quick" (smoke runs)."""
    from carve.latency import compare

    comparison = compare(list(models.values()), names=list(models), input_size=input_size, runtime=runtime,
                         threads=threads, protocol=_protocol(protocol), progress=True)
    out = {n: Timing(r.median_ms, r.p10_ms, r.p90_ms, r.runs, q)
           for n, r, q in zip(models, comparison.results, comparison.ratios)}
    return out, f"latency engine (carve.latency.compare, {runtime}, {protocol} protocol, interleaved)"
