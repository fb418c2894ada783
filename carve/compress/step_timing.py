"""Latency of a compression pipeline's models timed together, interleaved in one process.

Rows measured one after another minutes apart drift with the machine's load (identical graphs
have read 1.27 and 2.44 ms in one table); timed round-robin, their ratios hold. The keep-or-drop
gate and the final table both use these figures.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from carve.latency.protocol import Protocol


@dataclass(frozen=True)
class TimedModel:
    """A model and the runtime it is timed in (``onnxruntime`` exports it; ``eager`` calls it, which
    for an INT8 graph runs the runtime it was built for)."""

    model: nn.Module
    runtime: str


@dataclass(frozen=True)
class Timing:
    """One model's figures from a ``time_together`` call; ``ratio``: its time over the first model's,
    paired round by round (``carve.latency.protocol.paired_ratio``), the figure gates decide on."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    ratio: float = 1.0
    windows: int = 1

    def speedup_over(self, first: "Timing") -> float:
        """How many times faster than ``first`` (the first model of the same call) this model ran."""
        return first.ratio / self.ratio


def pooled(timings: Sequence[Timing]) -> Timing:
    """One model's figures from several ``time_together`` windows: the median of each figure over the
    windows, their calls added up."""
    if not timings:
        raise ValueError("timings: expected at least one window")
    med = lambda key: statistics.median(getattr(t, key) for t in timings)  # noqa: E731
    return Timing(med("median_ms"), med("p10_ms"), med("p90_ms"), sum(t.runs for t in timings), med("ratio"),
                  sum(t.windows for t in timings))


def export_key(model: nn.Module) -> str:
    """What a model's export depends on but its weights' values: its spec (when it has one), module
    tree and tensor shapes. Folding, pruning and factorising change it; finetuning does not."""
    from carve.latency.runtime import model_key

    h = hashlib.sha256(repr(model).encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
    return f"{model_key(model)}-{h.hexdigest()[:12]}"


def time_together(models: Sequence[TimedModel], input_size: int, in_channels: int,
                  threads: int | None = None, onnx_dir: Path | None = None,
                  protocol: "Protocol | None" = None) -> list[Timing]:
    """Time ``models`` round-robin with the latency engine's ``protocol`` (its full one by default);
    results in input order.

    ``onnx_dir``: a folder kept across calls, where each model's export is stored by its architecture
    (``export_key``), so a model timed again (a gate's pair, then the final table) is not exported
    again; without it every call exports into a temporary folder.
    """
    from carve.latency.comparison import interleave
    from carve.latency.fingerprint import physical_cores
    from carve.latency.protocol import Protocol, paired_ratio, summarize, warm_up
    from carve.latency.runtime import make_runner, torch_threads

    if not models:
        raise ValueError("models: expected at least one model to time")
    protocol = protocol or Protocol()
    threads = threads or physical_cores()
    block = 20 if any(m.runtime in ("onnxruntime", "openvino") for m in models) else 1
    with tempfile.TemporaryDirectory() as tmp, torch_threads(threads), torch.inference_mode():
        keys = [export_key(m.model) if onnx_dir is not None else f"step{i}" for i, m in enumerate(models)]
        runners = [make_runner(m.model, m.runtime, "cpu", 1, input_size, threads, onnx_dir=onnx_dir or Path(tmp),
                               key=key, in_channels=in_channels, clock=protocol.clock, spinning=False)
                   for key, m in zip(keys, models)]
        for r in runners:
            warm_up(r.timed, protocol)
        samples = interleave([r.timed for r in runners], protocol, block)
    stats = [summarize(s) for s in samples]
    return [Timing(s.median_ms, s.p10_ms, s.p90_ms, len(x), paired_ratio(x, samples[0], block)[0])
            for s, x in zip(stats, samples)]
