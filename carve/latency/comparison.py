"""``compare``: several models timed interleaved in one process, reported as ratios to the first."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from tqdm import tqdm

from .fingerprint import device_fingerprint, physical_cores
from .result import LatencyResult
from .protocol import Protocol, is_stable, paired_ratio, summarize, warm_up
from .runtime import make_runner, model_key, resolve_model, torch_threads


@dataclass
class Comparison:
    """Interleaved results, in input order; ``ratios[i]`` is model i's time over model 0's, the median
    over rounds of their paired block medians (``paired_ratio``)."""

    names: list[str]
    results: list[LatencyResult]
    ratios: list[float]

    def to_dict(self) -> dict[str, Any]:
        return dict(names=self.names, ratios=self.ratios, results=[r.to_dict() for r in self.results])

    def table(self) -> str:
        width = max(8, *(len(n) for n in self.names))
        lines = [f"{'model':{width}s} {'median ms':>10s} {'p10':>8s} {'p90':>8s} {'runs':>6s} {'outl':>5s} {'ratio':>7s}"]
        for n, r, q in zip(self.names, self.results, self.ratios):
            lines.append(f"{n:{width}s} {r.median_ms:10.3f} {r.p10_ms:8.3f} {r.p90_ms:8.3f} {r.runs:6d} "
                         f"{r.outliers:5d} {q:7.3f}")
        return "\n".join(lines)


MIN_ROUNDS = 10  # rounds before a ratio may be called stable: one slow round can't decide it


def interleave(timed: Sequence[Callable[[], float]], protocol: Protocol, block: int = 1,
               tick: Callable[[float], None] | None = None) -> list[list[float]]:
    """Timed samples of several warmed-up calls taken round-robin, ``block`` calls each per round, the
    order reversed every other round (A B, B A: drift within a round cancels), until every median is
    stable after at least ``MIN_ROUNDS`` rounds, ``max_runs`` is reached or ``max_time_s`` per call
    has passed (``tick`` gets the elapsed seconds after each round). Ratios between them are taken
    round by round (``paired_ratio``)."""
    samples: list[list[float]] = [[] for _ in timed]
    budget, start, rounds = protocol.max_time_s * len(timed), time.perf_counter(), 0
    while True:
        order = range(len(timed)) if rounds % 2 == 0 else range(len(timed) - 1, -1, -1)
        for i in order:
            samples[i].extend(timed[i]() for _ in range(block))
        rounds += 1
        n, elapsed = len(samples[0]), time.perf_counter() - start
        if tick is not None:
            tick(elapsed)
        if n >= protocol.max_runs or elapsed > budget and n >= protocol.min_runs:
            return samples
        if rounds >= MIN_ROUNDS and all(is_stable(s, protocol) for s in samples):
            return samples


def compare(models_or_specs: Sequence[Any], names: Sequence[str] | None = None, device: str = "cpu",
            batch: int = 1, input_size: int = 224, threads: int | None = None, runtime: str = "eager",
            channels_last: bool = False, protocol: Protocol | None = None, block: int | None = None,
            progress: bool = False) -> Comparison:
    """Time the models round-robin (A B C, C B A, ...) in this process and report ratios to the first.

    ``block`` calls per model per round: 1 by default, 20 for ONNX Runtime and OpenVINO, whose sessions disturb
    each other through thread spinning when interleaved call by call; ONNX Runtime sessions are
    also made without spin-waiting (``onnx_session``), which blocks alone did not prevent. Absolute
    times drift on shared machines and read higher than a model timed alone; the ratios, paired
    round by round, are the figure to trust.
    """
    from .remote import is_remote

    if not models_or_specs:
        raise ValueError("models_or_specs: expected at least one model")
    if is_remote(device):
        raise ValueError(f"device: {device}: interleaved comparison runs in this process; time models on a carve "
                         f"agent one at a time with measure(..., device=URL)")
    protocol = protocol or Protocol()
    threads = threads or physical_cores()
    block = block or (20 if runtime in ("onnxruntime", "openvino") else 1)
    models = [resolve_model(m) for m in models_or_specs]
    if names is None:
        names = [getattr(getattr(m, "spec", None), "name", None) or type(m).__name__ for m in models]
    if len(names) != len(models):
        raise ValueError(f"names: expected {len(models)} names, got {len(names)}")
    fp = device_fingerprint(device, threads, runtime)
    budget = protocol.max_time_s * len(models)
    bar = tqdm(total=2 * len(models), desc="latency: compare", unit="step", disable=not progress)
    with torch_threads(threads), torch.inference_mode(), bar:
        runners, warm = [], []
        for m in models:
            runners.append(make_runner(m, runtime, device, batch, input_size, threads, channels_last,
                                       clock=protocol.clock, spinning=False))
            warm.append(warm_up(runners[-1].timed, protocol))
            bar.update(1)
        shown = [0]

        def tick(elapsed: float) -> None:
            done = min(len(models), int(len(models) * elapsed / budget))
            bar.update(done - shown[0])
            shown[0] = done
        samples = interleave([r.timed for r in runners], protocol, block, tick)
        bar.update(len(models) - shown[0])
    results = []
    for m, r, s, (w, first) in zip(models, runners, samples, warm):
        st = summarize(s)
        cond = dict(r.conditions, model_key=model_key(m), interleaved=True, block=block, protocol=protocol.as_dict())
        results.append(LatencyResult(st.median_ms, st.p10_ms, st.p90_ms, st.runs, st.outliers, cond, fp,
                                     mean_ms=st.mean_ms, outlier_ms=st.outlier_ms, warmup_runs=w,
                                     first_call_ms=first, ci_rel=st.ci_rel))
    return Comparison(list(names), results, [paired_ratio(s, samples[0], block)[0] for s in samples])
