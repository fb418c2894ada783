"""The pipeline's keep-or-drop gates: a step is carried on only if it pays (speed, timed as a pair with
the model before it) and keeps the top-1 lost against the original within the budget (accuracy).
A step that fails a gate keeps its row in the report, marked "(not kept)", with the figures that
decided it in its notes."""

from __future__ import annotations

from typing import Callable

from torch import nn

from .report import CompressReport
from .step_timing import Timing, pooled

FP32_BLOCKS_GAIN = 1.25
"""How much faster returning blocks to FP32 may make an INT8 graph than the fully quantized one: in
ONNX Runtime it skips their QuantizeLinear/DequantizeLinear glue, up to 1.16x measured (the first half
of mobilenet_v3_large_100 in FP32, ``benchmarks/int8_keep_float_speed.py``, with spin-wait on); timed
without spin-wait, as the gates now time, at most 1.05x. Kept at 1.25: too large only costs an
accuracy control that the gate then drops, too small would drop a variant that pays."""


GATE_MARGIN = 0.05
"""A pair whose speed-up reads within this fraction of its gate's threshold is timed again: on the
2-core VM the same INT8/FP32 pair read 0.75x-0.93x over 12 windows of about 10 s
(``benchmarks/int8_gate_replay.py --load-s 25``), so one window near the line can fall either side."""
GATE_WINDOWS = 3
"""Windows at most for one gate decision; the figures decided on are their medians (``pooled``)."""


def decisive_pair(time: Callable[[list[nn.Module]], list[Timing]], before: nn.Module, after: nn.Module,
                  threshold: float) -> list[Timing]:
    """``before`` and ``after`` timed together by ``time``, again while the pooled speed-up of ``after``
    reads within ``GATE_MARGIN`` of ``threshold`` (``GATE_WINDOWS`` windows at most)."""
    windows = [time([before, after])]
    while len(windows) < GATE_WINDOWS:
        first, second = (pooled([w[i] for w in windows]) for i in range(2))
        if abs(second.speedup_over(first) / threshold - 1) > GATE_MARGIN:
            break
        windows.append(time([before, after]))
    return [pooled([w[i] for w in windows]) for i in range(2)]


def lost(report: CompressReport) -> float:
    """Top-1 points the last kept row has lost against the original (0 without accuracy)."""
    first, last = report.rows[0].top1, report.kept_rows()[-1].top1
    return 0.0 if first is None or last is None else first - last


def within(report: CompressReport, max_drop: float) -> bool:
    """Whether the last step kept the loss against the original within ``max_drop`` points; if not, its row
    is marked as not kept (it stays in the report) and the caller goes on from the model before it."""
    row, first = report.rows[-1], report.rows[0].top1
    if row.top1 is None or first is None:
        raise ValueError("max_drop: an accuracy budget needs the top-1 of every row (eval data)")
    lost = first - row.top1
    row.notes["accuracy_gate"] = dict(lost=round(lost, 3), max_drop=max_drop)
    if lost <= max_drop + 1e-9:
        return True
    row.notes["kept"] = False
    row.name += " (not kept)"
    return False


def pays(report: CompressReport, min_speedup: float, pair: list[Timing] | None) -> bool:
    """Whether the last step made the model at least ``min_speedup`` x faster than the kept row before
    it, timed as a ``pair`` interleaved; if not, its row is marked as not kept (it stays in the report)
    and the caller goes on from the model before it."""
    if pair is None:
        raise ValueError("min_speedup: keeping a step only where it pays needs latency measurements")
    before, after = pair
    speedup = after.speedup_over(before)
    row = report.rows[-1]
    row.notes["gate"] = dict(before_ms=round(before.median_ms, 4), after_ms=round(after.median_ms, 4),
                             speedup=round(speedup, 3), min_speedup=min_speedup, windows=after.windows)
    if speedup >= min_speedup:
        return True
    row.notes["kept"] = False
    row.name += " (not kept)"
    return False


def pair_pays(time: Callable[[list[nn.Module]], list[Timing]], before: nn.Module, min_speedup: float,
              pair: list[Timing], after: nn.Module, slack: float = FP32_BLOCKS_GAIN) -> bool:
    """Whether ``after``, ``slack`` x faster, would be ``min_speedup`` x faster than ``before``, timed
    together by ``time`` (the timings are left in ``pair``; ``decisive_pair``): the accuracy-controlled
    INT8 step's gate on its fully quantized model, which variants with blocks in FP32 may beat by up to
    ``slack``."""
    pair[:] = decisive_pair(time, before, after, min_speedup / slack)
    return pair[1].speedup_over(pair[0]) * slack >= min_speedup


__all__ = ["FP32_BLOCKS_GAIN", "GATE_MARGIN", "GATE_WINDOWS", "decisive_pair", "lost", "pair_pays", "pays", "within"]
