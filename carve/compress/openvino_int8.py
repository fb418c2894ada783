"""OpenVINO INT8: NNCF post-training quantization of an ONNX export, and the quantized model behind a
module interface so the compress pipeline evaluates and times it like any other row.

Operations are named ``<module>/<op>_<i>`` before conversion (``carve.latency.qdq.name_nodes``; OpenVINO
keeps the names), so ``keep_float`` globs over module names become NNCF's ignored scope.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from carve.latency.onnx_export import export_onnx
from carve.latency.openvino_runtime import openvino_compile
from carve.latency.qdq import ScopeError, ancestors, check_patterns, matches, name_nodes
from carve.zoo import ArchSpec

from .int8_inputs import QuantizeError, calibration_images as _images


def openvino_ops_in(model: Any, keep_float: Sequence[str]) -> list[str]:
    """Names of the operations of OpenVINO ``model`` (named ``<module>/<op>_<i>[/...]``) whose module
    matches one of ``keep_float``; a pattern matching none raises naming it."""
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    out: list[str] = []
    for i, p in enumerate(keep_float):
        found = [n for n in names if "/" in n and matches(n.split("/", 1)[0], p)]
        if not found:
            example = next((n for n in names if "/" in n), "")
            raise ScopeError(f"keep_float[{i}]: pattern {p!r} matches no operation of the OpenVINO model "
                             f"(its operations are named <module>/<op>_<i>, e.g. {example})")
        out += [n for n in found if n not in out]
    return out


def nncf_int8(fp32: str | Path, xml: str | Path, calib: Sequence[torch.Tensor],
              keep_float: Sequence[str] = ()) -> Path:
    """OpenVINO IR at ``xml`` (``.bin`` beside it): the ONNX file ``fp32`` quantized to INT8 by NNCF
    (PERFORMANCE preset, fast bias correction, calibrated on ``calib``), but for the operations of
    the modules matching ``keep_float``."""
    import openvino as ov

    try:
        import nncf
    except ImportError as exc:
        raise RuntimeError("OpenVINO INT8 needs NNCF (pip install nncf)") from exc
    fp32, xml = Path(fp32), Path(xml)
    if keep_float:
        named = xml.with_name(f"{xml.stem}_named.onnx")
        name_nodes(fp32, named)
        fp32 = named
    model = ov.convert_model(str(fp32))
    ignored = nncf.IgnoredScope(names=openvino_ops_in(model, keep_float)) if keep_float else None
    model = nncf.quantize(model, nncf.Dataset(list(calib), lambda x: x.numpy()), subset_size=len(calib),
                          preset=nncf.QuantizationPreset.PERFORMANCE, ignored_scope=ignored)
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


class OvModel(nn.Module):
    """An OpenVINO IR behind a module interface: compiled for each input shape it meets (height and
    width free in the file), run image by image."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        from carve.latency.fingerprint import physical_cores

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"OpenVINO IR not found: {self.path}")
        self.threads = threads or physical_cores()
        self._compiled: dict[tuple[int, ...], Any] = {}

    def _compiled_for(self, shape: tuple[int, ...]) -> Any:
        if shape not in self._compiled:
            self._compiled[shape] = openvino_compile(self.path, self.threads, shape=shape)
        return self._compiled[shape]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for xi in x.split(1):
            compiled = self._compiled_for(tuple(xi.shape))
            outs.append(compiled(xi.detach().cpu().numpy())[compiled.outputs[0]])
        return torch.from_numpy(np.concatenate(outs))

    def __deepcopy__(self, memo: dict) -> OvModel:
        return OvModel(self.path, self.threads)


def quantize_openvino(model: nn.Module, spec: ArchSpec | None = None, calib: Iterable | None = None,
                      out_dir: str | Path = "compress_out", calib_images: int = 128, threads: int | None = None,
                      keep_float: Sequence[str] = ()) -> tuple[OvModel, ArchSpec | None]:
    """OpenVINO INT8 of ``model`` through NNCF (``out_dir/model_int8.xml``); the model is an ``OvModel``.
    ``keep_float``: glob patterns over module names whose operations stay FP32."""
    spec = spec or getattr(model, "spec", None)
    images = _images(calib, calib_images)
    out = Path(out_dir)
    size, cin = images[0].shape[-1], images[0].shape[1]
    fp32 = export_onnx(model.eval(), out / "model_fp32_ov.onnx", input_size=size, in_channels=cin, dynamic_size=True)
    try:
        if keep_float:
            named = name_nodes(fp32, out / "model_fp32_ov_named.onnx")
            keep = check_patterns(keep_float, {a for m in named.values() for a in ancestors(m)})
        else:
            keep = []
        xml = nncf_int8(fp32, out / "model_int8.xml", images, keep)
    except ScopeError as exc:
        raise QuantizeError(str(exc)) from None
    q = OvModel(xml, threads)
    q.carve_steps = list(getattr(model, "carve_steps", [])) + [
        f"int8-openvino(nncf, calib={len(images)}" + (f", float={list(keep)})" if keep else ")")]
    q.keep_float = list(keep)
    return q, spec


__all__ = ["OvModel", "nncf_int8", "openvino_ops_in", "quantize_openvino"]
