"""Accuracy-controlled INT8: layers return to floating point, most sensitive first, until the
held-out top-1 lost is at most ``max_drop`` points.

The order comes from a sensitivity table (``carve.compress.sensitivity``), ONNX Runtime QDQ with one
calibration shared by every variant whatever flow is controlled (``table_runtime="torch"``: a PT2E
table; measured on mobilenet_v3_large_100, it took twice as long and kept more blocks in FP32 for
PT2E than ONNX Runtime's order did, docs/compress.md). ONNX Runtime variants are re-quantizations of one export;
PT2E variants (``runtime="torch"``) are re-quantized with ``keep_float`` and evaluated without
compiling, the kept one compiled at the end; OpenVINO variants (``runtime="openvino"``) are NNCF
quantizations of one export with the FP32 blocks as its ignored scope. The speed gate (``keep_if_faster``) is the
pipeline's, applied to the result like to any step; given ``speed_gate``, the fully quantized variant
must pass it before any accuracy is spent (the pipeline's gate leaves room for the variants with
blocks in FP32 to be faster: ``step_gates.pair_pays``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from torch import nn

from carve.zoo import ArchSpec

from carve.latency.qdq import QdqGraph, ScopeError, check_patterns, matches
from .openvino_int8 import OvModel, nncf_int8
from .int8_inputs import QuantizeError, calibration_images as _images
from .quantization import Int8Model, OrtModel, quantize_pt2e
from .sensitivity import TABLE_RUNTIMES, SensitivityTable, measure_sensitivity, top1


FLOWS = {"onnxruntime": "ort", "torch": "pt2e", "openvino": "openvino"}  # runtime -> its INT8 flow's tag


@dataclass
class ControlResult:
    """The INT8 model kept, what stayed FP32, and every variant tried (keep_float, top-1, drop)."""

    model: nn.Module
    keep_float: list[str]
    fp32_top1: float
    int8_top1: float
    drop: float
    met: bool
    max_drop: float
    table: SensitivityTable | None  # None: the speed gate stopped it before the table was measured
    trail: list[dict[str, Any]] = field(default_factory=list)
    too_slow: bool = False  # the fully quantized variant failed ``speed_gate``; no accuracy control ran

    def notes(self) -> dict[str, Any]:
        """JSON-ready summary for a report row."""
        notes = dict(max_drop=self.max_drop, drop=round(self.drop, 3), met=self.met, fp32_top1=self.fp32_top1,
                     int8_top1=self.int8_top1, kept_float=list(self.keep_float), variants_tried=len(self.trail),
                     trail=self.trail)
        if self.too_slow:
            notes["accuracy_control"] = "skipped: the fully quantized model failed the speed gate"
        return notes


def check_max_drop(max_drop: Any) -> float:
    """``max_drop`` as a float (top-1 points, >= 0); anything else raises naming the field."""
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not max_drop >= 0:
        raise QuantizeError(f"max_drop: expected the top-1 points INT8 may lose, a number >= 0, got {max_drop!r}")
    return float(max_drop)


def controlled_int8(model: nn.Module, spec: ArchSpec | None = None, calib: Iterable | None = None,
                    eval: Iterable | None = None, out_dir: str | Path = "compress_out", *, max_drop: float = 1.0,
                    runtime: str = "onnxruntime", keep_float: Sequence[str] = (), calib_images: int = 128,
                    calibration: str = "percentile", granularity: str = "block",
                    prune_ratios: Sequence[float] = (), prunable: nn.Module | None = None,
                    table: SensitivityTable | None = None, threads: int | None = None,
                    compile: bool = True, table_runtime: str = "onnxruntime",
                    speed_gate: Callable[[nn.Module], bool] | None = None) -> tuple[ControlResult, ArchSpec]:
    """INT8 of ``model`` losing at most ``max_drop`` top-1 points on ``eval`` (``(images, labels)``
    batches): quantize everything (but ``keep_float``); while the drop is larger, keep the next most
    sensitive unit of ``table`` (measured here when not given) in FP32. ``result.met`` is False when
    even all units in FP32 do not meet it (the last variant is returned, and says so).

    ``table_runtime``: the INT8 flow the table is measured in when not given ("onnxruntime" or
    "torch"). ``speed_gate``: called once with the fully quantized variant,
    before the sensitivity table; False returns that variant as it is (``result.too_slow``, no table,
    one variant in the trail).
    """
    max_drop = check_max_drop(max_drop)
    if eval is None:
        raise QuantizeError("eval: accuracy control needs held-out (images, labels) batches to measure the drop")
    if runtime not in FLOWS:
        raise QuantizeError(f"runtime: expected one of {list(FLOWS)}, got {runtime!r}")
    if table_runtime not in TABLE_RUNTIMES:
        raise QuantizeError(f"table_runtime: expected one of {list(TABLE_RUNTIMES)}, got {table_runtime!r}")
    spec = spec or getattr(model, "spec", None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = _images(calib, calib_images)
    graph = QdqGraph(model, images, out, calibration)
    try:
        keep = list(check_patterns(keep_float, graph.module_names()))
    except ScopeError as exc:
        raise QuantizeError(str(exc)) from None

    def build(patterns: list[str]) -> nn.Module:
        if runtime == "onnxruntime":
            return OrtModel(graph.quantize(out / "model_int8.onnx", keep_float=patterns), threads)
        if runtime == "openvino":
            return OvModel(nncf_int8(graph.fp32_path, out / "model_int8.xml", images, patterns), threads)
        return quantize_pt2e(model, spec, images, calib_images=len(images), keep_float=patterns, compile=False)[0]

    q = build(keep)  # the fully quantized variant, always the first one tried
    too_slow = speed_gate is not None and not speed_gate(q)
    if table is None and not too_slow:
        table = measure_sensitivity(model, calib, eval, out, granularity=granularity, prune_ratios=prune_ratios,
                                    prunable=prunable, threads=threads, graph=graph, runtime=table_runtime,
                                    calib_images=calib_images)
    fp32 = top1(model, eval)[0] if table is None else table.fp32_top1
    candidates = [] if too_slow else [u for u in table.ranked() if not any(matches(u, p) for p in keep)]
    trail: list[dict[str, Any]] = []
    while True:
        t = top1(q, eval)[0]
        trail.append(dict(keep_float=list(keep), top1=t, drop=fp32 - t))
        if fp32 - t <= max_drop or not candidates:
            break
        keep.append(candidates.pop(0))
        q = build(keep)
    if runtime == "torch" and compile:
        q = Int8Model(q.converted, q.example, compile=True)
    tag = f"int8-{FLOWS[runtime]}(calib={len(images)}, max_drop={max_drop:g}, " \
          f"float={len(keep)})"
    q.carve_steps = list(getattr(model, "carve_steps", [])) + [tag]
    q.keep_float = list(keep)
    result = ControlResult(model=q, keep_float=list(keep), fp32_top1=fp32, int8_top1=t, drop=fp32 - t,
                           met=fp32 - t <= max_drop, max_drop=max_drop, table=table, trail=trail,
                           too_slow=too_slow)
    return result, spec


__all__ = ["ControlResult", "check_max_drop", "controlled_int8"]
