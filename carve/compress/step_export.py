"""The pipeline's export step: the last model as ONNX, OpenVINO IR, a ``torch.export`` program, an
AOTInductor package or a Core ML package, each checked against the model it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from .artefacts import file_size, to_onnx, to_program
from .openvino_int8 import OvModel
from .quantization import Int8Model, OrtModel, package_aoti

EXPORT_FORMATS = ("onnx", "openvino", "program", "aoti", "coreml")
QUANTIZED = (Int8Model, OrtModel, OvModel)


def export_step(model: nn.Module, out: Path, eval_data: Iterable | None, input_size: int, in_channels: int,
                kw: dict[str, Any]) -> dict[str, Any]:
    """Write the formats ``kw["formats"]`` asks for (default ONNX) and what checks them; the notes of the row."""
    formats = kw.get("formats", ("onnx",))
    info: dict[str, Any] = {}
    images = next(iter(eval_data), None) if eval_data is not None else None
    if isinstance(images, (tuple, list)):
        images = images[0]
    if "onnx" in formats:
        if isinstance(model, OrtModel):
            info.update(onnx=str(model.path), onnx_bytes=file_size(model.path))
        elif isinstance(model, Int8Model):
            info["onnx"] = "skipped: a PT2E INT8 graph is deployed as an AOTInductor package, not ONNX"
        elif isinstance(model, OvModel):
            info["onnx"] = "skipped: an OpenVINO INT8 model is deployed as OpenVINO IR (export format 'openvino')"
        else:
            check = to_onnx(model, out / "model.onnx", images, input_size)
            info.update(onnx=check.path, onnx_bytes=check.size_bytes, onnx_max_abs_diff=check.max_abs_diff,
                        onnx_top1_agreement=check.top1_agreement)
    if "openvino" in formats:
        info.update(_openvino(model, out, images, input_size, in_channels, info.get("onnx")))
    if "program" in formats and not isinstance(model, (OrtModel, OvModel)):
        graph = model.converted if isinstance(model, Int8Model) else model
        path = to_program(graph, out / "model.pt2", input_size, in_channels)
        info.update(program=str(path), program_bytes=file_size(path))
    if "aoti" in formats and isinstance(model, Int8Model):
        path = package_aoti(model, out / "model_int8_aoti.pt2", torch.zeros(1, in_channels, input_size, input_size))
        info.update(aoti=str(path), aoti_bytes=file_size(path))
    if "coreml" in formats:
        if isinstance(model, QUANTIZED):
            info["coreml"] = "skipped: an INT8 graph is not converted to Core ML; palettise with the cluster step"
        else:
            from carve.latency.coreml_runtime import export_mlpackage

            from .coreml_check import check_mlpackage

            path = export_mlpackage(model, out / "model.mlpackage", input_size, 1, in_channels)
            check = check_mlpackage(model, path, input_size, in_channels)
            if not check.ok:
                raise RuntimeError(f"{path}: the Core ML package does not match the model: {'; '.join(check.problems)}")
            info.update(coreml=str(path), coreml_bytes=check.package_bytes,
                        coreml_weight_bytes=check.weight_file_bytes, coreml_palettised=check.palettised_tensors)
    return info


def _openvino(model: nn.Module, out: Path, images: torch.Tensor | None, input_size: int, in_channels: int,
              onnx: Any) -> dict[str, Any]:
    """The model as OpenVINO IR (an ``OvModel`` is one already), its outputs compared with the model's."""
    if isinstance(model, OvModel):
        return dict(openvino=str(model.path), openvino_bytes=file_size(model.path) + file_size(model.path.with_suffix(".bin")))
    if isinstance(model, (Int8Model, OrtModel)):
        return dict(openvino="skipped: an INT8 graph of another runtime is not converted to OpenVINO; quantize "
                             "with runtime 'openvino'")
    from carve.latency.onnx_export import export_onnx
    from carve.latency.openvino_runtime import convert_to_ir

    if not (isinstance(onnx, str) and onnx.endswith(".onnx")):
        onnx = export_onnx(model.eval(), out / "model_fp32_ir.onnx", input_size=input_size, in_channels=in_channels,
                           dynamic_size=True)
    xml = convert_to_ir(onnx, out / "model.xml")
    info: dict[str, Any] = dict(openvino=str(xml), openvino_bytes=file_size(xml) + file_size(xml.with_suffix(".bin")))
    if images is not None:
        with torch.inference_mode():
            diff = (OvModel(xml, 1)(images) - model.eval()(images)).abs().max().item()
        info["openvino_max_abs_diff"] = diff
    return info
