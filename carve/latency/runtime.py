"""Turn a model into a timed call on a runtime: eager, torch.compile, ONNX Runtime,
OpenVINO, ExecuTorch or LiteRT (both through XNNPACK); CPU or CUDA."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from carve.zoo import ArchSpec, create_model, resolve_spec
from carve.zoo.mobileone import reparameterize

from .program_formats import PROGRAMS

RUNTIMES = ("eager", "compile", "onnxruntime", "openvino", "executorch", "litert")  # the one list every --runtime choice comes from


@dataclass
class Runner:
    """One model ready to run: ``timed()`` runs one inference and returns its time in ms."""

    timed: Callable[[], float]
    conditions: dict[str, Any] = field(default_factory=dict)


def resolve_spec_or_module(model_or_spec: Any) -> nn.Module | ArchSpec:
    """The module itself, or the spec of an ArchSpec, a spec dict, a zoo name or a spec/weights file."""
    if isinstance(model_or_spec, nn.Module):
        return model_or_spec
    if isinstance(model_or_spec, (ArchSpec, dict, str, Path)):
        return resolve_spec(model_or_spec)[0]
    raise TypeError(f"model_or_spec: expected an nn.Module, ArchSpec, dict, zoo name or spec file, "
                    f"got {type(model_or_spec).__name__}")


def resolve_model(model_or_spec: Any) -> nn.Module:
    """A module from a module, an ArchSpec, a spec dict, a zoo name or a spec/weights file."""
    found = resolve_spec_or_module(model_or_spec)
    return found if isinstance(found, nn.Module) else create_model(found)


def model_key(model: nn.Module) -> str:
    """Cache identity: the spec hash for carve models, else a hash of the module tree and shapes."""
    spec = getattr(model, "spec", None)
    if isinstance(spec, ArchSpec):
        return f"spec:{spec.hash()}"
    h = hashlib.sha256(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
    return f"module:{h.hexdigest()[:16]}"


def input_channels(model: nn.Module) -> int:
    spec = getattr(model, "spec", None)
    if isinstance(spec, ArchSpec):
        return spec.in_channels
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Fix torch's intra-op thread count for the duration."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


CLOCKS = ("wall", "cpu")


def cpu_timer(fn: Callable[[], Any], clock: str = "wall") -> Callable[[], float]:
    """Wall time, or with ``clock="cpu"`` the calling thread's CPU time (blind to preemption by
    other processes; meaningful for single-threaded runs on a shared machine)."""
    now = time.perf_counter_ns if clock == "wall" else time.thread_time_ns

    def timed() -> float:
        t0 = now()
        fn()
        return (now() - t0) / 1e6
    return timed


def _cuda_timer(fn: Callable[[], Any], device: torch.device) -> Callable[[], float]:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    stream = torch.cuda.current_stream(device)

    def timed() -> float:
        stream.synchronize()
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end))
    return timed


def make_runner(model: nn.Module, runtime: str = "eager", device: str = "cpu", batch: int = 1,
                input_size: int = 224, threads: int = 1, channels_last: bool = False,
                onnx_dir: Path | None = None, key: str | None = None, in_channels: int | None = None,
                clock: str = "wall", spinning: bool = True) -> Runner:
    """Prepare a copy of ``model`` for timing (the caller's module is left as it was); call inside
    ``torch.inference_mode()`` and ``torch_threads``. ``spinning=False`` for runners timed in turn
    with others: ONNX Runtime's idle threads then do not spin-wait (``onnx_session``)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: expected one of {list(RUNTIMES)}, got {runtime!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock: expected one of {list(CLOCKS)}, got {clock!r}")
    if batch < 1 or input_size < 1:
        raise ValueError(f"batch and input_size must be >= 1, got batch={batch}, input_size={input_size}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r}: no CUDA device is available")
    try:
        model = copy.deepcopy(model).eval()
        reparameterize(model)  # re-parameterisable blocks (MobileOne) run deployed, as they ship
    except Exception:  # a module that can't be copied is timed in place
        model = model.eval()
    cin = in_channels or input_channels(model)
    cond: dict[str, Any] = dict(runtime=runtime, device=device, batch=batch, input_size=input_size,
                                in_channels=cin, threads=threads, channels_last=channels_last,
                                clock="cuda-events" if dev.type == "cuda" else clock)
    if runtime in PROGRAMS:
        return _program_runner(runtime, model, dev, batch, input_size, cin, threads, onnx_dir,
                               key or model_key(model), cond, clock)
    if runtime == "openvino":
        return _ov_runner(model, dev, batch, input_size, cin, threads, onnx_dir, key or model_key(model), cond,
                          clock)
    if runtime == "onnxruntime":
        return _ort_runner(model, dev, batch, input_size, cin, threads, onnx_dir, key or model_key(model), cond,
                           clock, spinning)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=fmt)
    x = torch.randn(batch, cin, input_size, input_size, device=dev).contiguous(memory_format=fmt)
    fn: Callable[[], Any] = model
    if runtime == "compile":
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        compiled(x)
        cond["compile_s"] = round(time.perf_counter() - t0, 2)
        fn = compiled
    call = lambda: fn(x)  # noqa: E731
    timer = _cuda_timer(call, dev) if dev.type == "cuda" else cpu_timer(call, clock)
    return Runner(timer, cond)


def cached_onnx(model: nn.Module, batch: int, size: int, cin: int, onnx_dir: Path | None, key: str,
                 cond: dict[str, Any]) -> Path:
    """The model's ONNX export for this input shape, from the cache folder when already there."""
    from .cache import cache_dir
    from .onnx_export import export_onnx

    onnx_dir = onnx_dir or cache_dir() / "onnx"
    path = onnx_dir / f"{key.replace(':', '_')}_{batch}x{cin}x{size}.onnx"
    t0 = time.perf_counter()
    if not path.is_file():
        export_onnx(model.cpu(), path, input_size=size, batch=batch, in_channels=cin)
    cond["export_s"] = round(time.perf_counter() - t0, 2)
    cond["onnx_file"] = str(path)
    return path


def _ort_runner(model: nn.Module, dev: torch.device, batch: int, size: int, cin: int, threads: int,
                onnx_dir: Path | None, key: str, cond: dict[str, Any], clock: str, spinning: bool = True) -> Runner:
    import numpy as np
    import onnxruntime as ort

    from .onnx_export import onnx_session

    path = cached_onnx(model, batch, size, cin, onnx_dir, key, cond)
    if dev.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("runtime='onnxruntime' on CUDA needs onnxruntime-gpu (CUDAExecutionProvider)")
        session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    else:
        session = onnx_session(path, threads, spinning)
        cond["spinning"] = spinning
    name = session.get_inputs()[0].name
    feed = {name: np.random.default_rng(0).standard_normal((batch, cin, size, size), dtype=np.float32)}
    return Runner(cpu_timer(lambda: session.run(None, feed), clock), cond)


def _ov_runner(model: nn.Module, dev: torch.device, batch: int, size: int, cin: int, threads: int,
               onnx_dir: Path | None, key: str, cond: dict[str, Any], clock: str) -> Runner:
    """OpenVINO on CPU, compiled from the same ONNX export ONNX Runtime times (FP32 precision hint)."""
    from .artefact import open_artefact

    if dev.type != "cpu":
        raise ValueError(f"runtime='openvino' runs on CPU here; got device={dev.type!r}")
    path = cached_onnx(model, batch, size, cin, onnx_dir, key, cond)
    t0 = time.perf_counter()
    art = open_artefact(path, "openvino", threads)
    cond["compile_s"] = round(time.perf_counter() - t0, 2)
    x = art.example(batch, size)
    return Runner(cpu_timer(lambda: art.run(x), clock), cond)


def cached_program(runtime: str, model: nn.Module, batch: int, size: int, cin: int, cache: Path | None, key: str,
                   cond: dict[str, Any]) -> Path:
    """The model's ExecuTorch (.pte) or LiteRT (.tflite) program for this input shape, from the cache
    folder when already there."""
    from .cache import cache_dir

    suffix = PROGRAMS[runtime].suffix.lstrip(".")
    path = (cache or cache_dir() / suffix) / f"{key.replace(':', '_')}_{batch}x{cin}x{size}.{suffix}"
    t0 = time.perf_counter()
    if not path.is_file():
        if runtime == "executorch":
            from .executorch_runtime import export_pte as export
        else:
            from .litert_runtime import export_tflite as export
        export(model.cpu().eval(), path, input_size=size, batch=batch, in_channels=cin)
    cond["export_s"] = round(time.perf_counter() - t0, 2)
    cond[f"{suffix}_file"] = str(path)
    return path


def _program_runner(runtime: str, model: nn.Module, dev: torch.device, batch: int, size: int, cin: int,
                    threads: int, onnx_dir: Path | None, key: str, cond: dict[str, Any], clock: str) -> Runner:
    """ExecuTorch or LiteRT on CPU through XNNPACK, from a cached program (beside the ONNX exports)."""
    from .artefact import open_artefact

    if dev.type != "cpu":
        raise ValueError(f"runtime={runtime!r} runs on CPU here; got device={dev.type!r}")
    path = cached_program(runtime, model, batch, size, cin, onnx_dir, key, cond)
    art = open_artefact(path, runtime, threads)
    x = art.example(batch, size)
    return Runner(cpu_timer(lambda: art.run(x), clock), cond)
