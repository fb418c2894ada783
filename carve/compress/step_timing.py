"""Latency of a compression pipeline's models timed together, interleaved in one process.

Rows measured one after another minutes apart drift with the machine's load (identical graphs
have read 1.27 and 2.44 ms in one table); timed round-robin, their ratios hold. The keep-or-drop
gate and the final table both use these figures.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class TimedModel:
    """A model and the runtime it is timed in (``onnxruntime`` exports it; ``eager`` calls it, which
    for an INT8 graph runs the runtime it was built for)."""

    model: nn.Module
    runtime: str


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int


def time_together(models: Sequence[TimedModel], input_size: int, in_channels: int,
                  threads: int | None = None) -> list[Timing]:
    """Time ``models`` round-robin with the latency engine's protocol; results in input order."""
    from carve.latency.comparison import interleave
    from carve.latency.fingerprint import physical_cores
    from carve.latency.protocol import Protocol, summarize, warm_up
    from carve.latency.runtime import make_runner, torch_threads

    if not models:
        raise ValueError("models: expected at least one model to time")
    protocol = Protocol()
    threads = threads or physical_cores()
    block = 20 if any(m.runtime in ("onnxruntime", "openvino") for m in models) else 1
    with tempfile.TemporaryDirectory() as tmp, torch_threads(threads), torch.inference_mode():
        runners = [make_runner(m.model, m.runtime, "cpu", 1, input_size, threads, onnx_dir=Path(tmp),
                               key=f"step{i}", in_channels=in_channels, clock=protocol.clock)
                   for i, m in enumerate(models)]
        for r in runners:
            warm_up(r.timed, protocol)
        samples = interleave([r.timed for r in runners], protocol, block)
    stats = [summarize(s) for s in samples]
    return [Timing(s.median_ms, s.p10_ms, s.p90_ms, len(x)) for s, x in zip(stats, samples)]
