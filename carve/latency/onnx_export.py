"""ONNX export of a model and an ONNX Runtime session with a fixed thread count."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from carve.zoo.mobileone import deployed


def export_onnx(model: nn.Module, path: str | Path, input_size: int = 224, batch: int = 1,
                opset: int | None = None, in_channels: int | None = None, dynamic_size: bool = False,
                dynamic_batch: bool = False, translations: dict[Any, Any] | None = None,
                names: tuple[list[str], list[str]] | None = None) -> Path:
    """Export ``model`` (eval mode) for a fixed ``batch x C x size x size`` input (height and width
    left free with ``dynamic_size``, e.g. to evaluate at the training size and time at the deploy
    size with one file; the batch left free with ``dynamic_batch``); written atomically.

    Uses the dynamo exporter (torch's default) and falls back to the legacy TorchScript exporter
    when it fails; ``translations`` (the dynamo exporter's ``custom_translation_table``, for custom
    ops) leaves the dynamo exporter alone. ``names``: (input names, output names). Re-parameterisable blocks (MobileOne) are exported in their deployed form (a copy;
    ``model`` keeps its branches). Returns the path of the ``.onnx`` file.
    """
    path = Path(path)
    model = deployed(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    if in_channels is None:
        spec = getattr(model, "spec", None)
        in_channels = getattr(spec, "in_channels", 3)
    was_training = model.training
    model.eval()
    x = torch.zeros(batch, in_channels, input_size, input_size)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    dynamo_kw: dict[str, Any] = {}
    legacy_kw: dict[str, Any] = {}
    dims: dict[int, Any] = {}
    axes: dict[int, str] = {}
    if dynamic_batch:
        dims[0], axes[0] = torch.export.Dim("batch", min=1, max=4096), "batch"
    if dynamic_size:
        side = dict(min=8, max=4096)
        dims.update({2: torch.export.Dim("height", **side), 3: torch.export.Dim("width", **side)})
        axes.update({2: "height", 3: "width"})
    if dims:
        dynamo_kw["dynamic_shapes"] = (dims,)
        legacy_kw = dict(input_names=["x"], dynamic_axes={"x": axes})
    if names is not None:
        kwargs.update(input_names=names[0], output_names=names[1])
        legacy_kw.pop("input_names", None)
        if "dynamic_axes" in legacy_kw:
            legacy_kw["dynamic_axes"] = {names[0][0]: axes}
    if translations:
        dynamo_kw["custom_translation_table"] = translations
    try:
        try:
            _quiet_export(model, x, tmp, dynamo=True, **kwargs, **dynamo_kw)
        except Exception as first:  # the dynamo exporter can't trace every model; try the legacy one
            if translations:
                raise RuntimeError(f"ONNX export to {path} failed: {first}") from first
            try:
                _quiet_export(model, x, tmp, dynamo=False, **kwargs, **legacy_kw)
            except Exception as second:
                raise RuntimeError(f"ONNX export to {path} failed: dynamo exporter: {first}; "
                                   f"legacy exporter: {second}") from second
        os.replace(tmp, path)
    finally:
        model.train(was_training)
        if tmp.exists():
            tmp.unlink()
        data = tmp.with_name(tmp.name + ".data")
        if data.exists():
            data.unlink()
    return path


def _quiet_export(model: nn.Module, x: torch.Tensor, path: Path, dynamo: bool, **kwargs: Any) -> None:
    """torch.onnx.export without its progress chatter on stdout/stderr."""
    sink = io.StringIO()
    level = logging.getLogger("torch.onnx").level
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            with torch.no_grad():
                if dynamo:
                    torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, **kwargs)
                else:
                    torch.onnx.export(model, (x,), str(path), dynamo=False, **kwargs)
    finally:
        logging.getLogger("torch.onnx").setLevel(level)


def onnx_session(path: str | Path, threads: int | None = None, spinning: bool = True) -> Any:
    """An ``onnxruntime.InferenceSession`` on CPU with ``threads`` intra-op threads (1 inter-op;
    default: the physical cores this process may use).

    ``spinning``: ONNX Runtime's default, idle intra-op threads spin-wait for a while after each call.
    Alone in a process that makes a small model faster; beside other sessions timed in turn, the
    spin of one steals the cores of the next (benchmarks/interleave_identical.py), so sessions
    timed together turn it off."""
    import onnxruntime as ort

    from .fingerprint import physical_cores

    threads = physical_cores() if threads is None else threads

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    if threads < 1:
        raise ValueError(f"threads: must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
