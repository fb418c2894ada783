"""The one place compress reaches the ONNX exporter and ONNX Runtime (shared helpers in carve.zoo.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn


def export_onnx(model: nn.Module, path: str | Path, input_size: int = 224, batch: int = 1,
                in_channels: int = 3) -> Path:
    """Export through ``carve.zoo.export.export_onnx`` (dynamo exporter with legacy fallback)."""
    try:
        from carve.zoo.export import export_onnx as shared
    except ImportError:  # the shared helper is not merged yet
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        x = torch.zeros(batch, in_channels, input_size, input_size)
        with torch.no_grad():
            torch.onnx.export(model.eval(), (x,), str(path), dynamo=False)
        return path
    return shared(model, path, input_size=input_size, batch=batch, in_channels=in_channels)


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """A CPU ``onnxruntime.InferenceSession`` (shared helper when present)."""
    import os

    threads = threads or max(1, len(os.sched_getaffinity(0)))
    try:
        from carve.zoo.export import onnx_session as shared
    except ImportError:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return shared(path, threads)
