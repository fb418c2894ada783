"""The pipeline's quantize step: INT8 in the runtime asked for (accuracy-controlled when the run has a
top-1 budget, quantization-aware when asked for epochs) or a float precision, with the sensitivity
table where asked. With both a budget and a speed gate, the fully quantized model is timed first and
accuracy control runs only if INT8 can pay at all."""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

from torch import nn

from carve.zoo import ArchSpec

from .accuracy_control import controlled_int8
from .artefacts import file_size
from .openvino_int8 import OvModel
from .quantization import OrtModel, quantize
from .report import CompressReport
from .sensitivity import SensitivityTable, measure_sensitivity
from .step_gates import lost, pair_pays
from .step_runner import StepRunner
from .step_timing import Timing


class Quantized(NamedTuple):
    model: nn.Module
    spec: ArchSpec | None
    notes: dict[str, Any]
    label: str
    size: int | None
    too_slow: list[Timing]  # the fully quantized pair, when it failed the speed gate before accuracy control


def quantize_step(model: nn.Module, spec: ArchSpec | None, trainable: nn.Module, kw: dict[str, Any],
                  runner: StepRunner, report: CompressReport, *, runtime: str, max_drop: float | None,
                  min_speedup: float | None, sensitivity: dict[str, Any] | None,
                  finetune: dict | None) -> Quantized:
    """Quantize ``model`` as ``kw`` asks; ``max_drop`` is the run's top-1 budget (what the report has
    already lost is taken off it) and ``min_speedup`` the step's speed gate."""
    kw = dict(kw)
    rt = kw.pop("runtime", runtime)
    precision = kw.get("precision", "int8")
    step_drop = kw.pop("max_drop", None)
    if max_drop is not None and precision == "int8" and not kw.get("qat_epochs"):
        left = max(0.0, max_drop - lost(report))
        step_drop = left if step_drop is None else min(step_drop, left)
    table_runtime = kw.pop("table_runtime", (sensitivity or {}).get("runtime", "onnxruntime"))
    sens = None if sensitivity is None else {"calibration": kw.get("calibration", "percentile"), **sensitivity,
                                             "runtime": table_runtime}
    notes: dict[str, Any] = {}
    pair: list[Timing] = []  # filled by the speed gate on the fully quantized model
    too_slow: list[Timing] = []
    if step_drop is not None:
        kw.pop("precision", None)
        if min_speedup is not None and runner.latency and sens is None:  # accuracy only on an INT8 that pays
            kw["speed_gate"] = partial(pair_pays, runner.time, model, min_speedup, pair)
        res, spec = controlled_int8(model, spec, runner.calib, runner.eval, runner.out_dir, max_drop=step_drop,
                                    runtime=rt, prunable=trainable, threads=runner.threads,
                                    prune_ratios=(sens or {}).get("prune_ratios", ()), table_runtime=table_runtime,
                                    **kw)
        model = res.model
        too_slow = pair if res.too_slow else []  # otherwise the kept variant is timed by the pipeline's gate
        notes.update(res.notes())
        if sens is not None and res.table is not None:
            res.table.write(runner.out_dir)
            report.files.update({f"sensitivity_{k}": v for k, v in res.table.files.items()})
    else:
        if sens is not None:
            table = sensitivity_table(model, trainable, runner, sens)
            report.files.update({f"sensitivity_{k}": v for k, v in table.files.items()})
        qat_epochs, qat_lr = int(kw.pop("qat_epochs", 0)), float(kw.pop("qat_lr", 1e-4))
        freeze_bn = bool(kw.pop("qat_freeze_bn", True))
        if qat_epochs:
            data = runner.qat_data(finetune or {})
            kw.update(qat_steps=qat_epochs * len(data), train_data=data, teacher=model, lr=qat_lr,
                      freeze_bn_stats=freeze_bn)
            notes.update(qat_epochs=qat_epochs, qat_steps=kw["qat_steps"], qat_teacher="fp32 model",
                         qat_freeze_bn=freeze_bn)
        model, spec = quantize(model, spec, calib=runner.calib, runtime=rt, out_dir=runner.out_dir, **kw)
    if getattr(model, "keep_float", None):
        notes["keep_float"] = list(model.keep_float)
    size = None
    if isinstance(model, OrtModel):
        size = file_size(model.path)
    elif isinstance(model, OvModel):
        size = file_size(model.path) + file_size(model.path.with_suffix(".bin"))
    return Quantized(model, spec, notes, f"{precision} ({rt})", size, too_slow)


def sensitivity_table(model: nn.Module, trainable: nn.Module, runner: StepRunner,
                      kwargs: dict[str, Any]) -> SensitivityTable:
    """The sensitivity table of ``model`` on the runner's data, written into its output folder."""
    if runner.eval is None:
        raise ValueError("sensitivity: the sensitivity table needs held-out data (eval)")
    table = measure_sensitivity(model, runner.calib, runner.eval, runner.out_dir / "sensitivity",
                                prunable=trainable, threads=runner.threads, **kwargs)
    table.write(runner.out_dir)
    return table


__all__ = ["Quantized", "quantize_step", "sensitivity_table"]
