"""``pipeline``: apply compression steps in order and measure the model after each one.

Every row is measured in this process (``step_runner``): parameters, MACs, size, latency and top-1.
The prune and quantize steps live in ``step_prune`` and ``step_quantize``, the keep-or-drop gates in
``step_gates``. Pruning works on the trainable (unfolded) model, re-applies folding when it came
first, and finetunes with ``carve.train.fit`` and the unpruned model as the KD teacher.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from carve.files import writable_dir
from carve.latency.protocol import PROTOCOLS
from carve.zoo import ArchSpec, create_model

from .accuracy_control import check_max_drop
from .clustering import check_bits, cluster, clustered_size
from .folding import fold, fold_any
from .factorisation import lowrank
from .graph_pruning import is_detector
from .pruning import check_ratio
from .quantization import RUNTIMES
from .report import CompressReport
from .step_export import EXPORT_FORMATS, export_step
from .step_gates import decisive_pair, pays, within
from .step_prune import prune_step
from .step_quantize import quantize_step, sensitivity_table
from .step_runner import StepRunner, data_root, eval_batches
from .step_timing import Timing

STEPS = ("fold", "prune", "lowrank", "cluster", "quantize", "export")


def parse_steps(steps: Sequence[str | tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Normalise ``["fold", ("prune", {"ratio": 0.3}), ...]``; unknown steps raise naming the known ones."""
    out = []
    for i, step in enumerate(steps):
        name, kwargs = (step, {}) if isinstance(step, str) else (step[0], dict(step[1]))
        if name not in STEPS:
            raise ValueError(f"steps[{i}]: unknown step {name!r}; expected one of {list(STEPS)}")
        if name == "prune" and "ratio" in kwargs:
            check_ratio(kwargs["ratio"], "prune ratio")
        if name == "cluster":
            check_bits(kwargs.get("bits", 8), kwargs.get("group_size", 0))
        formats = kwargs.get("formats", ()) if name == "export" else ()
        unknown = [f for f in formats if f not in EXPORT_FORMATS]
        if unknown:
            raise ValueError(f"steps[{i}]: unknown export format {unknown[0]!r}; expected {list(EXPORT_FORMATS)}")
        out.append((name, kwargs))
    return out


def _load(model_or_ckpt: Any, num_classes: int | None, small_input: int) -> nn.Module:
    if isinstance(model_or_ckpt, nn.Module):
        return model_or_ckpt
    text = str(model_or_ckpt)
    if Path(text).suffix in (".safetensors", ".pt", ".pth", ".bin", ".json", ".yaml", ".yml"):
        if not Path(text).is_file():
            raise FileNotFoundError(f"model: checkpoint not found: {text}")
        if Path(text).suffix in (".pt", ".pth") and _is_detect_checkpoint(text):
            raise ValueError(f"model: {text} is a detection checkpoint; carve compress measures classifiers "
                             f"(top-1): prune a detector with carve.compress.prune_graph(load_detector(path)[0], ...)")
        return create_model(text)
    return create_model(text, num_classes=num_classes, small_input=small_input)


def _is_detect_checkpoint(path: str) -> bool:
    from carve.train.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    return isinstance(state, dict) and str(state.get("format", "")).startswith("carve-detect")


def pipeline(model_or_ckpt: Any, steps: Sequence[str | tuple[str, dict]], calib: Any = None, eval: Any = None,
             out_dir: str | Path = "runs/compress", *, train: Any = None, runtime: str = "torch",
             finetune_epochs: int = 0, finetune: dict | None = None, img_size: int = 32, input_size: int | None = None,
             calib_per_class: int = 20, eval_per_class: int = 0, num_classes: int | None = None,
             small_input: int = 0, threads: int | None = None, latency: bool = True,
             compare_compiled: bool = False, sensitivity: dict[str, Any] | None = None,
             max_drop: float | None = None, protocol: str = "full") -> CompressReport:
    """Compress ``model_or_ckpt`` (module, zoo name, spec or weights file) step by step and report.

    ``steps``: names from ``STEPS`` or ``(name, kwargs)`` pairs passed to the step function, e.g.
    ``["fold", ("prune", {"ratio": 0.3}), ("quantize", {"precision": "int8"}), "export"]``.
    ``calib``/``eval``/``train``: image-folder roots (``eval`` also gives ``train`` its default) or
    iterables of ``(images, labels)``. Latency is measured at ``input_size`` (default ``img_size``)
    in ``runtime``'s engine; INT8 runs in the runtime it was built for. ``sensitivity``: keyword
    arguments of ``carve.compress.sensitivity`` (e.g. ``{"prune_ratios": [0.25, 0.5]}``): the table is
    measured on the model the quantize step gets (the original without one) and written as
    sensitivity.json/.md/.png. A quantize step with ``max_drop`` runs ``controlled_int8``.
    ``max_drop``: top-1 points on ``eval`` the result may lose against the original; a step that
    takes the loss past it is reported and dropped (``notes["accuracy_gate"]``), and an INT8 step
    is accuracy-controlled to what is left of it. ``protocol``: the latency engine's protocol every
    gate and the final table time with ("full" or "quick", ``carve.latency.PROTOCOLS``).
    """
    plan = parse_steps(steps)
    if max_drop is not None:
        max_drop = check_max_drop(max_drop)
        if eval is None:
            raise ValueError("max_drop: an accuracy budget needs held-out data (eval)")
    out = writable_dir(out_dir)  # before any work: a compression must not fail at its last write
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    needs_calib = sensitivity is not None or any(n == "quantize" and k.get("precision", "int8") == "int8"
                                                 for n, k in plan)
    evald = data_root(eval, "eval")
    calib = data_root(calib, "calib")
    if needs_calib and calib is None:
        calib = evald if isinstance(evald, Path) else None
    if needs_calib and calib is None:
        raise ValueError("calib: the quantize step needs calibration data (--calib DATA)")
    train_root = data_root(train, "train") if train is not None else (evald if isinstance(evald, Path) else None)
    runner = StepRunner(out, eval_batches(calib, ("train",), img_size, calib_per_class, 50),
                        eval_batches(evald, ("val", "test"), img_size, eval_per_class), train_root, img_size,
                        input_size or img_size, runtime, threads, latency, protocol)

    original = _load(model_or_ckpt, num_classes, small_input).eval()
    spec: ArchSpec | None = getattr(original, "spec", None)  # None: a user's module, pruned over its graph
    if is_detector(original):
        raise ValueError(f"model: the compress pipeline measures classifiers (top-1); a detector "
                         f"({type(original).__name__}) prunes with carve.compress.prune_graph")
    runner.model_name = spec.name if spec is not None else type(original).__name__
    runner.in_channels = spec.in_channels if spec is not None else 3
    trainable, model, folded = original, original, False
    report = CompressReport(model=runner.model_name, out_dir=str(out), runtime=runtime, input_size=runner.input_size)
    report.add(runner.row("original", original, spec, None))
    models = [original]  # the model of each row, timed together at the end
    if sensitivity is not None and not any(n == "quantize" for n, _ in plan):
        table = sensitivity_table(original, original, runner, sensitivity)
        report.files.update({f"sensitivity_{k}": v for k, v in table.files.items()})
    if compare_compiled and latency:
        from carve.latency import measure

        res = measure(original, runtime="compile", input_size=runner.input_size, threads=threads, cache=False)
        report.reference["original_compiled_ms"] = res.median_ms
    for name, kw in plan:
        t0 = time.perf_counter()
        notes: dict[str, Any] = {}
        size = None
        label = name
        kw = dict(kw)
        min_speedup = kw.pop("min_speedup", None)
        before = (trainable, model, spec, folded)
        too_slow: list[Timing] = []  # a quantize step's fully quantized pair, too slow before accuracy control
        if name == "fold":
            model, spec = fold(model, spec) if spec is not None else (fold_any(model), None)
            folded = True
        elif name == "prune":
            trainable, model, spec, pruned_notes, label = prune_step(trainable, spec, folded, kw, runner,
                                                                     finetune_epochs, finetune)
            notes.update(pruned_notes)
        elif name == "lowrank":
            model, spec = lowrank(model, spec, **kw)
            notes["layers"] = getattr(model, "lowrank_layers", [])
            label = f"lowrank ({len(notes['layers'])} layers)"
        elif name == "cluster":
            model, spec = cluster(model, spec, **kw)
            folded = True
            packed = clustered_size(model)
            size = packed.packed_bytes
            notes.update(bits=model.cluster_bits, group_size=model.cluster_group_size,
                         layers=len(model.cluster_layers), kept_float=list(model.cluster_skipped),
                         float_bytes=packed.float_bytes, packed_bytes=packed.packed_bytes)
            label = f"cluster {model.cluster_bits}-bit" + (f" per {model.cluster_group_size} ch"
                                                           if model.cluster_group_size else "")
        elif name == "quantize":
            model, spec, quantized_notes, label, size, too_slow = quantize_step(
                model, spec, trainable, kw, runner, report, runtime=runtime, max_drop=max_drop,
                min_speedup=min_speedup, sensitivity=sensitivity, finetune=finetune)
            notes.update(quantized_notes)
        elif name == "export":
            notes.update(export_step(model, out, runner.eval, runner.input_size, runner.in_channels, kw))
            size = notes.get("onnx_bytes") or notes.get("openvino_bytes")
            label = "export"
        notes["step_s"] = round(time.perf_counter() - t0, 1)
        prev = report.kept_rows()[-1]
        report.add(runner.row(label, model, spec, prev, size, notes, top1=prev.top1 if model is before[1] else None))
        models.append(model)
        if too_slow:  # INT8 not fast enough even fully quantized: dropped on the pair already timed
            kept = pays(report, min_speedup, too_slow)
        else:
            kept = max_drop is None or name == "export" or within(report, max_drop)
            if kept and min_speedup is not None:
                kept = pays(report, min_speedup,
                            decisive_pair(runner.time, before[1], model, min_speedup) if latency else None)
        if not kept:
            trainable, model, spec, folded = before
    if latency:
        timings = runner.time(models)
        for row, t in zip(report.rows, timings):
            row.latency_ms, row.latency_p10_ms, row.latency_p90_ms = t.median_ms, t.p10_ms, t.p90_ms
            row.speedup = round(t.speedup_over(timings[0]), 4)
        report.reference["timing"] = f"every row timed together, interleaved in one process ({protocol} protocol)"
    runner.close()
    report.write()
    return report


__all__ = ["EXPORT_FORMATS", "STEPS", "parse_steps", "pipeline"]
