"""The pipeline's export step: the last model as ONNX, a ``torch.export`` program, an AOTInductor
package or a Core ML package, each checked against the model it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from torch import nn

from .artefacts import file_size, to_onnx, to_program
from .quantization import Int8Model, OrtModel, package_aoti

EXPORT_FORMATS = ("onnx", "program", "aoti", "coreml")


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
        else:
            check = to_onnx(model, out / "model.onnx", images, input_size)
            info.update(onnx=check.path, onnx_bytes=check.size_bytes, onnx_max_abs_diff=check.max_abs_diff,
                        onnx_top1_agreement=check.top1_agreement)
    if "program" in formats and not isinstance(model, OrtModel):
        graph = model.converted if isinstance(model, Int8Model) else model
        path = to_program(graph, out / "model.pt2", input_size, in_channels)
        info.update(program=str(path), program_bytes=file_size(path))
    if "aoti" in formats and isinstance(model, Int8Model):
        path = package_aoti(model, out / "model_int8_aoti.pt2")
        info.update(aoti=str(path), aoti_bytes=file_size(path))
    if "coreml" in formats:
        if isinstance(model, (Int8Model, OrtModel)):
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
