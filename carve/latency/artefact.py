"""A deployed artefact (ONNX file, OpenVINO IR, ExecuTorch program or LiteRT model) opened in a runtime
as a numpy-in, numpy-out call.

No format runs code when it is loaded: ONNX is a protobuf graph, OpenVINO IR an XML graph with a
binary weights file beside it, a .pte or .tflite a FlatBuffer. Nothing here unpickles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .program_formats import PROGRAMS

ARTEFACT_RUNTIMES = ("onnxruntime", "openvino", "executorch", "litert")
SUFFIXES = {".onnx": "onnx", ".xml": "openvino", ".pte": "executorch", ".tflite": "litert"}  # OpenVINO also opens ONNX
RUNTIME_OF = {"onnx": "onnxruntime", "openvino": "openvino", "executorch": "executorch", "litert": "litert"}


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
    """"onnx", "openvino", "executorch" or "litert" from the file name; anything else is refused by name."""
    fmt = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: expected an ONNX file (.onnx), OpenVINO IR (.xml with its .bin), an "
                         f"ExecuTorch program (.pte) or a LiteRT model (.tflite), got suffix {Path(path).suffix!r}")
    return fmt


def open_artefact(path: str | Path, runtime: str | None = None, threads: int = 1) -> Artefact:
    """Open ``path`` in ``runtime`` (default: ONNX Runtime for .onnx, OpenVINO for .xml, ExecuTorch
    for .pte, LiteRT for .tflite) on CPU with ``threads`` threads."""
    path = Path(path)
    fmt = artefact_format(path)
    runtime = runtime or RUNTIME_OF[fmt]
    if runtime not in ARTEFACT_RUNTIMES:
        raise ValueError(f"runtime: expected one of {list(ARTEFACT_RUNTIMES)}, got {runtime!r}")
    if runtime == "onnxruntime" and fmt != "onnx":
        raise ValueError(f"{path}: ONNX Runtime opens ONNX files only; use runtime='openvino' for IR")
    for p in PROGRAMS.values():
        if (runtime == p.runtime) != (fmt == p.runtime):
            raise ValueError(f"{path}: {p.label} runs {p.suffix} files only, and only {p.label} runs them")
    if not path.is_file():
        raise FileNotFoundError(f"artefact not found: {path}")
    if runtime == "openvino":
        return _openvino(path, threads)
    if runtime == "executorch":
        return _executorch(path, threads)
    if runtime == "litert":
        return _litert(path, threads)
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

    def run_all(x: np.ndarray) -> list[np.ndarray]:
        return [t.numpy() for t in method.execute([torch.from_numpy(x)])]
    return Artefact(path, "executorch", lambda x: run_all(x)[0], dims, run_all)


def _litert(path: Path, threads: int) -> Artefact:
    from .litert_runtime import litert_interpreter

    interpreter = litert_interpreter(path, threads)
    inp = interpreter.get_input_details()[0]
    outs = _litert_outputs(interpreter)

    def run_all(x: np.ndarray) -> list[np.ndarray]:
        interpreter.set_tensor(inp["index"], _to_tensor(x, inp))
        interpreter.invoke()
        return [_from_tensor(interpreter.get_tensor(o["index"]), o) for o in outs]
    return Artefact(path, "litert", lambda x: run_all(x)[0], tuple(int(d) for d in inp["shape"]), run_all)


def _litert_outputs(interpreter: Any) -> list[dict[str, Any]]:
    """The output details in the model's own output order: litert-torch names a signature's outputs
    ``output_0, output_1, ...``, and the interpreter lists its output tensors in another order."""
    outs = interpreter.get_output_details()
    signatures = interpreter._get_full_signature_list()
    if len(outs) < 2 or len(signatures) != 1:
        return outs
    named = next(iter(signatures.values()))["outputs"]
    if sorted(named) != sorted(f"output_{i}" for i in range(len(outs))):
        return outs
    by_index = {o["index"]: o for o in outs}
    return [by_index[named[f"output_{i}"]] for i in range(len(outs))]


def _to_tensor(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A float input as the model's input tensor takes it (quantized with its scale and zero point
    when the model takes integers, as a fully INT8 LiteRT model does)."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def _from_tensor(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """An output tensor as floats (dequantized when the model returns integers)."""
    if np.issubdtype(y.dtype, np.integer):
        scale, zero = detail["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y
