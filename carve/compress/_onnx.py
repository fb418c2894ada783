"""ONNX export and sessions for compress: the shared helpers, with the thread default of the latency engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from carve.zoo.export import export_onnx


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """A CPU ``onnxruntime.InferenceSession`` (``threads`` defaults to the usable physical cores)."""
    from carve.search.latency import physical_cores
    from carve.zoo.export import onnx_session as shared

    return shared(path, threads or physical_cores())


__all__ = ["export_onnx", "onnx_session"]
