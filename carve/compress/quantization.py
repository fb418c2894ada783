"""Quantization through the supported flows only.

- PyTorch: torchao PT2E (``torch.export``, ``prepare_pt2e`` with ``X86InductorQuantizer``,
  calibrate, ``convert_pt2e``) then ``torch.compile`` with inductor freezing, which is what
  selects the INT8 kernels; ``package_aoti`` writes an AOTInductor package for deployment.
  Optional quantization-aware training (``qat_steps``) with ``prepare_qat_pt2e``.
- ONNX Runtime: static QDQ quantization, per-channel weights.
- OpenVINO: NNCF post-training quantization (``carve.compress.openvino_int8``).
- GPU (or CPUs with bf16 units): fp16/bf16 casts.

``torch.ao.quantization`` is deprecated and not used. INT8 does not pay on every family: measure.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from carve.zoo import ArchSpec

from carve.latency.onnx_export import onnx_session
from carve.zoo.mobileone import deployed

from carve.latency.qdq import CALIBRATIONS, QdqGraph, ScopeError, check_patterns

from .int8_inputs import QuantizeError, calibration_images as _images

PRECISIONS = ("int8", "fp16", "bf16")
RUNTIMES = ("torch", "onnxruntime", "openvino")


FREE_SIZE = {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}  # height and width, where the model allows


def _export(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``torch.export`` at batch 1 (the quantized graph is run image by image for larger batches), any image size."""
    return torch.export.export(model, (example,), dynamic_shapes=(FREE_SIZE,)).module()


class Int8Model(nn.Module):
    """A PT2E-quantized graph and its inductor-compiled (frozen) callable, compiled again for each new image size."""

    def __init__(self, converted: nn.Module, example: torch.Tensor, compile: bool = True):
        super().__init__()
        self.converted = converted
        self.example = example
        self._compiled = None
        if compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # without freezing no INT8 kernels run
            self._compiled = torch.compile(converted, dynamic=False)  # static kernels per size, as for one size
            with torch.no_grad():
                self._compiled(example)

    def train(self, mode: bool = True) -> Int8Model:
        """No-op for the graph: exported quantized graphs refuse ``.train()``/``.eval()``."""
        self.training = mode
        return self

    def __deepcopy__(self, memo: dict) -> Int8Model:
        """A copy sharing the frozen graph and its compiled kernels.

        Deep-copying a compiled module returns the bare graph, which runs the reference
        (dequantize -> fp32 -> quantize) ops about 10x slower than the INT8 kernels.
        """
        clone = Int8Model(self.converted, self.example, compile=False)
        clone._compiled = self._compiled
        clone.training = self.training
        if hasattr(self, "carve_steps"):
            clone.carve_steps = list(self.carve_steps)
        return clone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = self.converted if self._compiled is None else self._compiled
        try:
            return fn(x) if x.shape[0] == 1 else torch.cat([fn(xi) for xi in x.split(1)])
        except Exception as exc:
            if x.shape[2:] == self.example.shape[2:]:
                raise
            size, got = ("x".join(map(str, t.shape[2:])) for t in (self.example, x))
            raise QuantizeError(f"input: this INT8 graph, exported from {size} images, does not run at {got} "
                                f"(its model fixes the size?); quantize with calibration images of the size it "
                                f"will run at. {type(exc).__name__}: {str(exc)[:300]}") from exc


def quantize_pt2e(model: nn.Module, spec: ArchSpec | None = None, calib: Iterable | None = None,
                  calib_images: int = 128, qat_steps: int = 0, train_data: Iterable | None = None,
                  lr: float = 1e-4, compile: bool = True, keep_float: Sequence[str] = (),
                  teacher: nn.Module | None = None, kd_weight: float = 0.5,
                  freeze_bn_stats: bool = False, only: Sequence[str] | None = None) -> tuple[nn.Module, ArchSpec]:
    """INT8 for CPU through torchao PT2E + X86InductorQuantizer, compiled with inductor freezing.

    ``keep_float``: glob patterns over module names (e.g. ``*.se``) left in FP32. ``only``: glob
    patterns over module names; when given, only the matching modules are INT8 (less ``keep_float``),
    everything else stays FP32 (how the sensitivity table quantizes one block at a time). ``qat_steps``:
    quantization-aware training steps on ``train_data`` (with ``teacher``: the loss is
    ``(1 - kd_weight) * cross-entropy + kd_weight * KD`` against the teacher's logits).
    ``freeze_bn_stats``: QAT keeps the model's BatchNorm running statistics instead of re-estimating them.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    spec = spec or getattr(model, "spec", None)
    images = _images(calib, calib_images)
    example = images[0]
    # post-training: quantize the deployed form (MobileOne: one conv per block); QAT trains the branches
    base = (copy.deepcopy(model) if qat_steps > 0 else copy.deepcopy(deployed(model))).eval()
    quantizer = X86InductorQuantizer()
    config = get_default_x86_inductor_quantization_config(is_qat=qat_steps > 0)
    names = [n for n, _ in base.named_modules() if n]
    try:
        keep = check_patterns(keep_float, names)
        scope = None if only is None else check_patterns(only, names, "only")
    except ScopeError as exc:
        raise QuantizeError(str(exc)) from None
    if scope is None:
        quantizer.set_global(config)
    for name in names:  # the first module-name entry a node falls under decides: FP32 ones go first
        if any(fnmatch.fnmatchcase(name, p) for p in keep):
            quantizer.set_module_name_qconfig(name, None)  # None: the module's ops stay FP32
    for name in names if scope else ():
        if any(fnmatch.fnmatchcase(name, p) for p in scope) and not any(fnmatch.fnmatchcase(name, p) for p in keep):
            quantizer.set_module_name_qconfig(name, config)
    if qat_steps > 0:
        if train_data is None:
            raise QuantizeError("train_data: quantization-aware training needs (images, labels) batches")
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

        base.train()
        first = next(iter(_cycle(train_data)))[0]
        batch = torch.export.Dim("batch", min=1, max=4096)  # trained on batches, run image by image
        graph = torch.export.export(base, (first,), dynamic_shapes=({0: batch, **FREE_SIZE},)).module()
        prepared = prepare_qat_pt2e(graph, quantizer)
        move_exported_model_to_train(prepared)
        if freeze_bn_stats:
            _freeze_bn_stats(prepared)
        opt = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        if teacher is not None:
            from carve.train.distill import kd_loss

            teacher = copy.deepcopy(teacher).eval()
        for images_, labels in itertools.islice(_cycle(train_data), qat_steps):
            opt.zero_grad()
            logits = prepared(images_)
            loss = loss_fn(logits, labels)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(images_)
                loss = (1 - kd_weight) * loss + kd_weight * kd_loss(logits, target)
            loss.backward()
            opt.step()
        move_exported_model_to_eval(prepared)
    else:
        with torch.no_grad():
            prepared = prepare_pt2e(_export(base, example), quantizer)
    with torch.no_grad():
        for x in images:
            prepared(x)
        converted = convert_pt2e(prepared)
    out = Int8Model(converted, example, compile=compile)
    out.carve_steps = list(getattr(model, "carve_steps", [])) + [
        f"int8-pt2e(calib={len(images)}, qat={qat_steps}" + (f", float={list(keep)}" if keep else "")
        + (f", only={list(scope)})" if scope else ")")]
    out.keep_float = list(keep)
    return out, spec


def _freeze_bn_stats(graph: torch.fx.GraphModule) -> None:
    """Momentum 0 on every training-mode batch norm of an exported graph: its running statistics stay."""
    # both take (x, weight, bias, running_mean, running_var, training, momentum, eps, ...)
    targets = (torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit.default)
    norms = [node for node in graph.graph.nodes if node.target in targets]
    for node in norms:
        node.args = node.args[:6] + (0.0,) + node.args[7:]
    if norms:
        graph.recompile()


def _cycle(data: Iterable) -> Iterator:
    while True:
        empty = True
        for item in data:
            empty = False
            yield item
        if empty:
            raise QuantizeError("train_data: yielded no batches")


def package_aoti(model: Int8Model | nn.Module, path: str | Path, example: torch.Tensor | None = None) -> Path:
    """Write an AOTInductor package for ``example``'s shape, by default the calibration images' (load with
    ``torch._inductor.aoti_load_package``; no compile at load)."""
    import torch._inductor.config as inductor_config

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = model.converted if isinstance(model, Int8Model) else model
    example = example if example is not None else getattr(model, "example", None)
    if example is None:
        raise QuantizeError("example: pass an example input to package a plain module")
    inductor_config.freezing = True
    ep = torch.export.export(graph, (example,))
    tmp = path.with_name(path.stem + ".tmp.pt2")
    torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp))
    tmp.replace(path)
    return path


class OrtModel(nn.Module):
    """An ONNX Runtime session behind a module interface (batch-1 graph, looped over the batch).

    Its threads do not spin-wait: the pipeline times it in turn with FP32 sessions
    (``onnx_session``)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = onnx_session(self.path, threads, spinning=False)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.session.run(None, {self.input_name: xi.detach().cpu().numpy()})[0] for xi in x.split(1)]
        return torch.from_numpy(outs[0] if len(outs) == 1 else __import__("numpy").concatenate(outs))


def quantize_ort(model: nn.Module, spec: ArchSpec | None = None, calib: Iterable | None = None,
                 out_dir: str | Path = "compress_out", calib_images: int = 128, per_channel: bool = True,
                 threads: int | None = None, calibration: str = "percentile",
                 keep_float: Sequence[str] = (), dynamic_batch: bool = False) -> tuple[nn.Module, ArchSpec]:
    """ONNX Runtime static INT8 (QDQ, per-channel weights); the model is an ``OrtModel``
    (``out_dir/model_int8.onnx``; its batch axis left free with ``dynamic_batch``).

    ``calibration``: how activation ranges are set from the calibration images: "percentile"
    (99.999th percentile, clips rare outliers; the default: on a CIFAR-10 carve model, 3,000 test
    images, it lost 0.0 points where "minmax" and "entropy" (KL divergence) lost 2.2), "minmax".
    ``keep_float``: glob patterns over module names (e.g. ``*.se``) whose nodes stay FP32.
    """
    if calibration not in CALIBRATIONS:
        raise QuantizeError(f"calibration: expected one of {list(CALIBRATIONS)}, got {calibration!r}")
    spec = spec or getattr(model, "spec", None)
    images = _images(calib, calib_images)
    graph = QdqGraph(model, images, out_dir, calibration, per_channel, dynamic_batch=dynamic_batch)
    try:
        keep = check_patterns(keep_float, graph.module_names())
    except ScopeError as exc:
        raise QuantizeError(str(exc)) from None
    int8 = graph.quantize(Path(out_dir) / "model_int8.onnx", keep_float=keep)
    out = OrtModel(int8, threads)
    out.carve_steps = list(getattr(model, "carve_steps", [])) + [
        f"int8-ort(calib={len(images)}, {calibration}" + (f", float={list(keep)})" if keep else ")")]
    out.keep_float = list(keep)
    return out, spec


class Cast(nn.Module):
    """Runs a model in fp16/bf16 on ``device``; takes and returns float32 tensors."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, device: str):
        super().__init__()
        self.model, self.dtype, self.device = model.to(device=device, dtype=dtype), dtype, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device, self.dtype)).float().to(x.device)


def cast(model: nn.Module, spec: ArchSpec | None = None, precision: str = "fp16",
         device: str | None = None) -> tuple[nn.Module, ArchSpec]:
    """fp16/bf16 inference (GPU when present; bf16 also runs on CPUs with bf16 units)."""
    if precision not in ("fp16", "bf16"):
        raise QuantizeError(f"precision: expected fp16 or bf16, got {precision!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if precision == "fp16" and device == "cpu":
        raise QuantizeError("precision='fp16' needs a GPU here; use bf16 on CPU")
    spec = spec or getattr(model, "spec", None)
    out = Cast(copy.deepcopy(model).eval(), torch.float16 if precision == "fp16" else torch.bfloat16, device)
    out.carve_steps = list(getattr(model, "carve_steps", [])) + [f"{precision}({device})"]
    return out, spec


def quantize(model: nn.Module, spec: ArchSpec | None = None, precision: str = "int8", runtime: str = "torch",
             calib: Iterable | None = None, out_dir: str | Path = "compress_out", **kwargs: Any) -> tuple[nn.Module, ArchSpec]:
    """Dispatch: int8 through ``runtime`` (torch: PT2E, onnxruntime: QDQ, openvino: NNCF), fp16/bf16 by casting."""
    if precision not in PRECISIONS:
        raise QuantizeError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    if runtime not in RUNTIMES:
        raise QuantizeError(f"runtime: expected one of {list(RUNTIMES)}, got {runtime!r}")
    if precision != "int8":
        return cast(model, spec, precision, kwargs.get("device"))
    if runtime == "torch":
        return quantize_pt2e(model, spec, calib, **kwargs)
    if runtime == "openvino":
        from .openvino_int8 import quantize_openvino

        return quantize_openvino(model, spec, calib, out_dir=out_dir, **kwargs)
    return quantize_ort(model, spec, calib, out_dir=out_dir, **kwargs)
