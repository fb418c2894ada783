"""``pipeline``: apply compression steps in order and measure the model after each one.

Every row is measured in this process: parameters, MACs, size, latency and top-1. Pruning works on
the trainable (unfolded) model, re-applies folding when it came first, and finetunes with
``carve.train.fit`` and the unpruned model as the KD teacher.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from carve.files import writable_dir
from carve.zoo import ArchSpec, count_params, create_model, save_weights

from .accuracy_control import check_max_drop, controlled_int8
from .artefacts import file_size, state_size
from .clustering import check_bits, cluster, clustered_size
from .folding import fold, fold_any
from .factorisation import lowrank
from .graph_pruning import is_detector, prune_graph, save_graph_pruned
from .pruning import check_ratio, conv_macs, prune
from .openvino_int8 import OvModel
from .quantization import RUNTIMES, Int8Model, OrtModel, quantize
from .report import CompressReport, StepRow
from .sensitivity import SensitivityTable, measure_sensitivity
from .step_export import EXPORT_FORMATS, QUANTIZED, export_step
from .step_gates import lost, pair_pays, pays, within
from .step_timing import TimedModel, Timing, time_together

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


def _data_root(data: Any, what: str) -> Any:
    if data is None or not isinstance(data, (str, Path)):
        return data
    if not Path(data).is_dir():
        raise FileNotFoundError(f"{what}: data folder not found: {data} (expected an image folder with "
                                f"train/ and test/ or val/, e.g. ../shared/data/cifar10)")
    return Path(data)


def _loader(data: Any, split: tuple[str, ...], img_size: int, per_class: int, batch_size: int = 100) -> Any:
    if data is None or not isinstance(data, Path):
        return data
    from carve.train import eval_loader

    return eval_loader(data, img_size, batch_size, per_class=per_class, workers=0, split=split)


def _graph_bytes(model: nn.Module) -> int:
    """Bytes of the tensors a quantized graph actually reads (its ``get_attr`` nodes), else of its state."""
    graph = getattr(getattr(model, "converted", model), "graph", None)
    if graph is None:
        return state_size(model)
    root, seen, total = getattr(model, "converted", model), set(), 0
    for node in graph.nodes:
        if node.op != "get_attr":
            continue
        obj = root
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        if isinstance(obj, torch.Tensor) and id(obj) not in seen:
            seen.add(id(obj))
            total += obj.numel() * obj.element_size()
    return total


class _Epochs:
    """A training loader as (images, labels) batches; each pass over it is a new epoch's order."""

    def __init__(self, loader: Any):
        self.loader, self.epoch = loader, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        from carve.train import set_epoch

        set_epoch(self.loader, self.epoch)
        self.epoch += 1
        for batch in self.loader:
            yield batch[0], batch[1]


class _Runner:
    """Measures rows; holds the data, the latency settings and the original model for finetuning."""

    def __init__(self, out_dir: Path, calib: Any, evald: Any, train_root: Path | None, img_size: int,
                 input_size: int, runtime: str, threads: int | None, latency: bool):
        self.out_dir, self.calib, self.eval, self.train_root = out_dir, calib, evald, train_root
        self.img_size, self.input_size, self.runtime = img_size, input_size, runtime
        self.threads, self.latency = threads, latency
        self.model_name, self.in_channels = "model", 3  # set from the model once loaded

    def row(self, name: str, model: nn.Module, spec: ArchSpec | None, prev: StepRow | None, size: int | None = None,
            notes: dict | None = None) -> StepRow:
        """Everything but latency, which ``time_rows`` measures for all rows together."""
        plain = not isinstance(model, QUANTIZED)
        params = count_params(model) if plain else (prev.params if prev else 0)
        macs = conv_macs(model, self.input_size, self.in_channels) if plain else (prev.macs if prev else 0)
        size = size if size is not None else (state_size(model) if plain else _graph_bytes(model))
        rt = self.timed(model).runtime
        if not plain:
            rt = "int8-" + ("torch-inductor" if isinstance(model, Int8Model)
                            else "openvino" if isinstance(model, OvModel) else "onnxruntime")
        top1 = None
        if self.eval is not None:
            from carve.train import evaluate

            top1 = float(evaluate(model, self.eval, img_size=self.img_size, device="cpu")["top1"])
        return StepRow(name=name, spec_name=spec.name if spec is not None else self.model_name, params=params,
                       macs=macs, size_bytes=size, latency_ms=None, latency_p10_ms=None, latency_p90_ms=None,
                       runtime=rt, top1=top1, notes=notes or {})

    def timed(self, model: nn.Module) -> TimedModel:
        """A plain model runs in the pipeline's runtime's engine; an INT8 graph in the runtime it was built for."""
        plain = not isinstance(model, QUANTIZED)
        return TimedModel(model, self.runtime if (self.runtime in ("onnxruntime", "openvino") and plain) else "eager")

    def time(self, models: Sequence[nn.Module], in_channels: int) -> list[Timing]:
        return time_together([self.timed(m) for m in models], self.input_size, in_channels, self.threads)

    def qat_data(self, finetune: dict) -> _Epochs:
        """Shuffled (images, labels) batches of the training split, reshuffled each pass."""
        if self.train_root is None:
            raise ValueError("qat_epochs: quantization-aware training needs a training image folder (train= or "
                             "--eval DATA with a train/ split)")
        from carve.train import train_loader

        return _Epochs(train_loader(self.train_root, self.img_size, int(finetune.get("batch_size", 32)),
                                    aug=str(finetune.get("aug", "weak")),
                                    per_class=int(finetune.get("train_per_class", 0)), workers=0))

    def finetune(self, model: nn.Module, teacher: nn.Module, epochs: int, tag: str, **kw: Any) -> nn.Module:
        if self.train_root is None:
            raise ValueError("finetune_epochs: finetuning needs a training image folder (train= or --eval DATA "
                             "with a train/ split)")
        from carve.train import TrainConfig, fit

        student = save_weights(model, self.out_dir / f"{tag}_student.safetensors")
        teacher_path = save_weights(teacher, self.out_dir / "teacher.safetensors")
        cfg = TrainConfig(model=str(student), data=str(self.train_root), out_dir=str(self.out_dir / f"{tag}_finetune"),
                          epochs=epochs, teacher=str(teacher_path), img_size=self.img_size, overwrite=True,
                          **{"lr": 0.02, "warmup_epochs": 0.0, "cutmix_alpha": 0.0, "workers": 0, "progress": True,
                             "tensorboard": False, **kw})
        return fit(cfg).model.cpu().eval()


def pipeline(model_or_ckpt: Any, steps: Sequence[str | tuple[str, dict]], calib: Any = None, eval: Any = None,
             out_dir: str | Path = "runs/compress", *, train: Any = None, runtime: str = "torch",
             finetune_epochs: int = 0, finetune: dict | None = None, img_size: int = 32, input_size: int | None = None,
             calib_per_class: int = 20, eval_per_class: int = 0, num_classes: int | None = None,
             small_input: int = 0, threads: int | None = None, latency: bool = True,
             compare_compiled: bool = False, sensitivity: dict[str, Any] | None = None,
             max_drop: float | None = None) -> CompressReport:
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
    is accuracy-controlled to what is left of it.
    """
    plan = parse_steps(steps)
    if max_drop is not None:
        max_drop = check_max_drop(max_drop)
        if eval is None:
            raise ValueError("max_drop: an accuracy budget needs held-out data (eval)")
    out = writable_dir(out_dir)  # before any work: a compression must not fail at its last write
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    needs_calib = sensitivity is not None or any(n == "quantize" and k.get("precision", "int8") == "int8"
                                                 for n, k in plan)
    evald = _data_root(eval, "eval")
    calib = _data_root(calib, "calib")
    if needs_calib and calib is None:
        calib = evald if isinstance(evald, Path) else None
    if needs_calib and calib is None:
        raise ValueError("calib: the quantize step needs calibration data (--calib DATA)")
    train_root = _data_root(train, "train") if train is not None else (evald if isinstance(evald, Path) else None)
    runner = _Runner(out, _loader(calib, ("train",), img_size, calib_per_class, 50),
                     _loader(evald, ("val", "test"), img_size, eval_per_class), train_root, img_size,
                     input_size or img_size, runtime, threads, latency)

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
        table = _sensitivity(original, original, runner, sensitivity)
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
        speed_first: list[Timing] = []  # a quantize step's fully quantized pair, timed before accuracy control
        if name == "fold":
            model, spec = fold(model, spec) if spec is not None else (fold_any(model), None)
            folded = True
        elif name == "prune":
            iters = int(kw.pop("iterations", 1))
            epochs = int(kw.pop("finetune_epochs", finetune_epochs))
            ratio = kw.pop("ratio", None)
            teacher = trainable
            if spec is None:  # a user's module: pruned over its traced graph, saved with its layer shapes
                trainable, kept = _graph_prune(trainable, runner, ratio, iters, epochs, kw)
                save_graph_pruned(trainable, out / "pruned.safetensors")
                notes.update(graph=True, kept_whole=kept, shapes_file=str(out / "pruned.json"))
                model = fold_any(trainable) if folded else trainable
            else:
                for it in range(iters):
                    r = None if ratio is None else 1 - (1 - ratio) ** (1 / iters)
                    trainable, spec = prune(trainable, trainable.spec, r, input_size=runner.input_size,
                                            data=runner.calib, **kw)
                    if epochs > 0:
                        trainable = runner.finetune(trainable, teacher, epochs, f"prune{it}", **(finetune or {}))
                        spec = trainable.spec
                model = fold(trainable, spec)[0] if folded else trainable
                save_weights(trainable, out / "pruned.safetensors")
                notes.update(spec_file=str(out / "pruned.json"))
                spec.save(out / "pruned.json")
            notes.update(ratio=ratio, iterations=iters, finetune_epochs=epochs)
            label = "prune"
            if ratio is not None:
                label += f" {ratio:g}"
            elif "target_macs" in kw:
                label += f" to {kw['target_macs']:.0%} MACs"
            if epochs:
                label += f" + finetune {epochs}ep"
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
            rt = kw.pop("runtime", runtime)
            precision = kw.get("precision", "int8")
            step_drop = kw.pop("max_drop", None)
            if max_drop is not None and precision == "int8" and not kw.get("qat_epochs"):
                left = max(0.0, max_drop - lost(report))
                step_drop = left if step_drop is None else min(step_drop, left)
            sens = None if sensitivity is None else {"calibration": kw.get("calibration", "percentile"), **sensitivity}
            if step_drop is not None:
                kw.pop("precision", None)
                if min_speedup is not None and latency and sens is None:  # accuracy only on an INT8 that pays
                    kw["speed_gate"] = partial(pair_pays, partial(runner.time, in_channels=runner.in_channels),
                                               model, min_speedup, speed_first)
                res, spec = controlled_int8(model, spec, runner.calib, runner.eval, out, max_drop=step_drop,
                                            runtime=rt, prunable=trainable, threads=runner.threads,
                                            prune_ratios=(sens or {}).get("prune_ratios", ()), **kw)
                model, speed_first[:] = res.model, speed_first if res.too_slow else []  # kept: timed again below
                notes.update(res.notes())
                if sens is not None and res.table is not None:
                    res.table.write(out)
                    report.files.update({f"sensitivity_{k}": v for k, v in res.table.files.items()})
            else:
                if sens is not None:
                    table = _sensitivity(model, trainable, runner, sens)
                    report.files.update({f"sensitivity_{k}": v for k, v in table.files.items()})
                qat_epochs, qat_lr = int(kw.pop("qat_epochs", 0)), float(kw.pop("qat_lr", 1e-4))
                if qat_epochs:
                    data = runner.qat_data(finetune or {})
                    kw.update(qat_steps=qat_epochs * len(data), train_data=data, teacher=model, lr=qat_lr)
                    notes.update(qat_epochs=qat_epochs, qat_steps=kw["qat_steps"], qat_teacher="fp32 model")
                model, spec = quantize(model, spec, calib=runner.calib, runtime=rt, out_dir=out, **kw)
            if getattr(model, "keep_float", None):
                notes["keep_float"] = list(model.keep_float)
            if isinstance(model, OrtModel):
                size = file_size(model.path)
            elif isinstance(model, OvModel):
                size = file_size(model.path) + file_size(model.path.with_suffix(".bin"))
            label = f"{precision} ({rt})"
        elif name == "export":
            notes.update(export_step(model, out, runner.eval, runner.input_size, runner.in_channels, kw))
            size = notes.get("onnx_bytes") or notes.get("openvino_bytes")
            label = "export"
        notes["step_s"] = round(time.perf_counter() - t0, 1)
        report.add(runner.row(label, model, spec, report.kept_rows()[-1], size, notes))
        models.append(model)
        if (not pays(report, min_speedup, speed_first) if speed_first  # INT8 too slow even fully quantized
                else (max_drop is not None and name != "export" and not within(report, max_drop))
                or min_speedup is not None and not pays(report, min_speedup, runner.time(
                    [before[1], model], runner.in_channels) if latency else None)):
            trainable, model, spec, folded = before
    if latency:
        for row, t in zip(report.rows, runner.time(models, runner.in_channels)):
            row.latency_ms, row.latency_p10_ms, row.latency_p90_ms = t.median_ms, t.p10_ms, t.p90_ms
        report.reference["timing"] = "every row timed together, interleaved in one process"
    report.write()
    return report


def _graph_prune(model: nn.Module, runner: _Runner, ratio: float | None, iters: int, epochs: int,
                 kw: dict[str, Any]) -> tuple[nn.Module, list[str]]:
    """A model without a spec pruned over its traced graph in ``iters`` rounds; the layers kept whole."""
    if epochs:
        raise ValueError("finetune_epochs: finetuning after pruning rebuilds the model from a carve spec; a model "
                         "without one is pruned without finetuning (finetune_epochs=0)")
    if "target_latency" in kw:
        raise ValueError("target_latency: a model without a carve spec prunes to ratio or target_macs")
    target = kw.pop("target_macs", None)
    size = runner.input_size
    kept: list[str] = []
    for _ in range(iters):
        res = prune_graph(model, torch.zeros(1, runner.in_channels, size, size), data=runner.calib,
                          ratio=None if ratio is None else 1 - (1 - ratio) ** (1 / iters),
                          target_macs=None if target is None else target ** (1 / iters), **kw)
        model, kept = res.model, res.kept_whole
    return model, kept


def _sensitivity(model: nn.Module, trainable: nn.Module, runner: _Runner, kwargs: dict[str, Any]) -> SensitivityTable:
    """The sensitivity table of ``model`` on the runner's data, written into its output folder."""
    if runner.eval is None:
        raise ValueError("sensitivity: the sensitivity table needs held-out data (eval)")
    table = measure_sensitivity(model, runner.calib, runner.eval, runner.out_dir / "sensitivity", prunable=trainable,
                        threads=runner.threads, **kwargs)
    table.write(runner.out_dir)
    return table


__all__ = ["EXPORT_FORMATS", "STEPS", "parse_steps", "pipeline"]
