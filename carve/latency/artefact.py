"""A deployed artefact (ONNX file, OpenVINO IR or ExecuTorch program) opened in a runtime as a
numpy-in, numpy-out call.

No format runs code when it is loaded: ONNX is a protobuf graph, OpenVINO IR an XML graph with a
binary weights file beside it, a .pte a FlatBuffer program. Nothing here unpickles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ARTEFACT_RUNTIMES = ("onnxruntime", "openvino", "executorch")
SUFFIXES = {".onnx": "onnx", ".xml": "openvino", ".pte": "executorch"}  # OpenVINO also opens ONNX


@dataclass
class Artefact:
    """An opened artefact: ``run(x)`` returns the first output, ``run_all(x)`` every output (in the
    graph's order); ``input_shape`` has None for free axes."""

    path: Path
    runtime: str
    run: Callable[[np.ndarray], np.ndarray]
    input_shape: tuple[int | None, ...]
    run_all: Callable[[np.ndarray], list[np.ndarray]] | None = None

    def example(self, batch: int = 1, size: int = 224, seed: int = 0) -> np.ndarray:
        """A random float32 input, free axes filled with ``batch`` (axis 0) and ``size`` (the others)."""
        shape = tuple(d if d is not None else (batch if i == 0 else size) for i, d in enumerate(self.input_shape))
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def artefact_format(path: str | Path) -> str:
    """"onnx" or "openvino" from the file name; anything else is refused by name."""
    fmt = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: expected an ONNX file (.onnx), OpenVINO IR (.xml with its .bin) or an "
                         f"ExecuTorch program (.pte), "
                         f"got suffix {Path(path).suffix!r}")
    return fmt


def open_artefact(path: str | Path, runtime: str | None = None, threads: int = 1) -> Artefact:
    """Open ``path`` in ``runtime`` (default: ONNX Runtime for .onnx, OpenVINO for .xml, ExecuTorch
    for .pte) on CPU with ``threads`` threads."""
    path = Path(path)
    fmt = artefact_format(path)
    runtime = runtime or {"onnx": "onnxruntime", "openvino": "openvino", "executorch": "executorch"}[fmt]
    if runtime not in ARTEFACT_RUNTIMES:
        raise ValueError(f"runtime: expected one of {list(ARTEFACT_RUNTIMES)}, got {runtime!r}")
    if runtime == "onnxruntime" and fmt != "onnx":
        raise ValueError(f"{path}: ONNX Runtime opens ONNX files only; use runtime='openvino' for IR")
    if (runtime == "executorch") != (fmt == "executorch"):
        raise ValueError(f"{path}: ExecuTorch runs .pte programs only, and only ExecuTorch runs them")
    if not path.is_file():
        raise FileNotFoundError(f"artefact not found: {path}")
    if runtime == "openvino":
        return _openvino(path, threads)
    if runtime == "executorch":
        return _executorch(path, threads)
    from .onnx_export import onnx_session

    session = onnx_session(path, threads)
    inp = session.get_inputs()[0]
    name = inp.name
    shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
    return Artefact(path, runtime, lambda x: session.run(None, {name: x})[0], shape,
                    lambda x: list(session.run(None, {name: x})))


def _openvino(path: Path, threads: int) -> Artefact:
    from .openvino_runtime import openvino_compile

    compiled = openvino_compile(path, threads)
    request = compiled.create_infer_request()
    out = compiled.output(0)
    shape: Any = compiled.input(0).get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in shape)

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(request.infer({0: x})[out])

    def run_all(x: np.ndarray) -> list[np.ndarray]:
        result = request.infer({0: x})
        return [np.asarray(result[o]) for o in compiled.outputs]
    return Artefact(path, "openvino", run, dims, run_all)


def _executorch(path: Path, threads: int) -> Artefact:
    import torch

    from .executorch_runtime import executorch_method

    method = executorch_method(path, threads)
    dims = tuple(int(d) for d in method.metadata.input_tensor_meta(0).sizes())

    def run(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(x)])[0].numpy()
    return Artefact(path, "executorch", run, dims)
