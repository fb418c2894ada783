"""OpenVINO on CPU: an ONNX file (or IR) compiled for latency with a fixed thread count, and IR writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeError("runtime='openvino' needs the openvino package (pip install openvino)") from exc
    return openvino


def openvino_compile(path: str | Path, threads: int = 1, precision: str = "f32",
                     shape: tuple[int, ...] | None = None) -> Any:
    """``path`` (ONNX or IR .xml) compiled on CPU for one request at a time with ``threads`` threads
    (for input ``shape`` when given: a file with free dimensions compiled static).

    ``precision`` is OpenVINO's inference precision hint: "f32" by default, because on CPUs with
    bf16 units OpenVINO would otherwise run in bf16 and not match PyTorch; "bf16" to opt in.
    """
    ov = _openvino()
    if threads < 1:
        raise ValueError(f"threads: must be >= 1, got {threads}")
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": precision}
    core = ov.Core()
    model = core.read_model(str(path))
    if shape is not None:
        model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(shape))})
    return core.compile_model(model, "CPU", config)


def convert_to_ir(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """OpenVINO IR (``.xml`` graph and ``.bin`` weights beside it, FP32) converted from an ONNX file."""
    ov = _openvino()
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise ValueError(f"{xml_path}: OpenVINO IR is written as a .xml file (with its .bin beside it)")
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
    return xml_path


def openvino_version() -> str:
    """The installed OpenVINO version, or "absent"."""
    try:
        return str(_openvino().__version__)
    except RuntimeError:
        return "absent"
