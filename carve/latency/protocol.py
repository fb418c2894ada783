"""The timing protocol: warm up until the median settles, then time until the median is stable."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Protocol:
    """How long to warm up and how many timed runs to take.

    Warm-up runs windows of ``window`` calls until two consecutive window medians differ by less
    than ``settle_tol`` (at most ``warmup_max_windows``). Timed runs go on past ``min_runs`` until
    the 95% confidence interval of the median is within ``rel_ci`` of it, ``max_runs`` is reached
    or ``max_time_s`` has passed. ``clock`` "wall" times elapsed time; "cpu" the thread's CPU
    time, which ignores preemption by other processes (use with one thread on shared machines).
    """

    window: int = 5
    settle_tol: float = 0.05
    warmup_max_windows: int = 20
    min_runs: int = 30
    max_runs: int = 2000
    rel_ci: float = 0.01
    max_time_s: float = 4.0
    clock: str = "wall"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Protocol(window=3, settle_tol=0.2, warmup_max_windows=4, min_runs=10, max_runs=200, rel_ci=0.05,
                 max_time_s=0.5)
PROTOCOLS = {"full": Protocol(), "quick": QUICK}  # by name, for configs: the default and the short one


@dataclass
class Stats:
    """Summary of timed runs (milliseconds); outliers are counted and kept in the sample."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    runs: int
    outliers: int
    outlier_ms: list[float] = field(default_factory=list)
    ci_rel: float = 0.0


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted list."""
    if not sorted_values:
        raise ValueError("quantile of an empty sample")
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_ci_rel(sorted_values: list[float]) -> float:
    """Half-width of the order-statistic 95% CI of the median, relative to the median."""
    n = len(sorted_values)
    med = quantile(sorted_values, 0.5)
    half = 1.96 * math.sqrt(n) / 2
    lo, hi = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half))
    return (sorted_values[hi] - sorted_values[lo]) / 2 / med if med > 0 else math.inf


def summarize(samples_ms: list[float]) -> Stats:
    """Median, p10/p90, mean and Tukey outliers (beyond 1.5 IQR) of timed runs."""
    s = sorted(samples_ms)
    q1, q3 = quantile(s, 0.25), quantile(s, 0.75)
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    out = [v for v in samples_ms if v < lo or v > hi]
    return Stats(median_ms=quantile(s, 0.5), p10_ms=quantile(s, 0.1), p90_ms=quantile(s, 0.9),
                 mean_ms=statistics.fmean(s), runs=len(s), outliers=len(out),
                 outlier_ms=[round(v, 4) for v in out[:50]], ci_rel=median_ci_rel(s))


def warm_up(timed_call: Callable[[], float], protocol: Protocol) -> tuple[int, float]:
    """Call until the window median settles; returns (calls made, first call in ms)."""
    first = timed_call()
    calls, previous = 1, None
    for _ in range(protocol.warmup_max_windows):
        window = sorted(timed_call() for _ in range(protocol.window))
        calls += protocol.window
        med = quantile(window, 0.5)
        if previous is not None and abs(med - previous) <= protocol.settle_tol * previous:
            break
        previous = med
    return calls, first


def is_stable(samples_ms: list[float], protocol: Protocol) -> bool:
    return len(samples_ms) >= protocol.min_runs and median_ci_rel(sorted(samples_ms)) <= protocol.rel_ci


def block_ratios(samples_ms: list[float], reference_ms: list[float], block: int) -> list[float]:
    """Per round of an interleaved timing, the median of this model's ``block`` calls over the median
    of the reference's block in the same round."""
    if block < 1:
        raise ValueError(f"block: expected >= 1, got {block}")
    n = min(len(samples_ms), len(reference_ms)) // block * block
    return [quantile(sorted(samples_ms[i:i + block]), 0.5) / quantile(sorted(reference_ms[i:i + block]), 0.5)
            for i in range(0, n, block)]


def paired_ratio(samples_ms: list[float], reference_ms: list[float], block: int) -> tuple[float, float]:
    """The median of ``block_ratios`` and the relative half-width of its 95% CI: a slow spell of the
    machine that spans a round slows both models in it and cancels."""
    ratios = sorted(block_ratios(samples_ms, reference_ms, block))
    if not ratios:
        raise ValueError("paired_ratio: expected at least one full round of both models")
    return quantile(ratios, 0.5), median_ci_rel(ratios)


def time_runs(timed_call: Callable[[], float], protocol: Protocol) -> list[float]:
    """Timed runs until the median is stable (or the run/time limits are reached)."""
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < protocol.max_runs:
        samples.append(timed_call())
        n = len(samples)
        if n >= protocol.min_runs and (n % 10 == 0 or n == protocol.min_runs):
            if is_stable(samples, protocol) or time.perf_counter() - start > protocol.max_time_s:
                break
    return samples
