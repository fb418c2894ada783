"""LiteRT (TFLite) with the XNNPACK delegate on CPU: a ``.tflite`` flatbuffer written from a model by
``litert-torch``, and run by ``ai-edge-litert``'s interpreter.

A ``.tflite`` file is a FlatBuffer (identifier ``TFL3`` at byte 4); loading it runs no Python code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from carve.zoo.mobileone import deployed

from .integer_activations import with_integer_hardswish
from .litert_quantizer import filtered_quantizer
from .program_formats import PROGRAMS
from .qdq import quantized_nodes

FORMAT = PROGRAMS["litert"]


def export_tflite(model: nn.Module, path: str | Path, input_size: int = 224, batch: int = 1,
                  in_channels: int | None = None, calib: list[torch.Tensor] | None = None,
                  keep_float: Sequence[str] = (), only: Sequence[str] = ()) -> Path:
    """``model`` (eval, MobileOne deployed) as a LiteRT flatbuffer for a fixed ``batch x C x size x size``
    input (NCHW, as the PyTorch model takes it); written atomically. With ``calib`` (1 x C x H x W
    images) it is quantized to INT8 first with litert-torch's PT2E quantizer (symmetric,
    per-channel weights), which lowers to XNNPACK's INT8 kernels; the modules matching the glob
    patterns ``keep_float`` (e.g. ``*.se``) stay FP32; ``only``: the submodules (by name) quantized,
    everything else FP32 (all when empty)."""
    try:
        import litert_torch
    except ImportError as exc:
        raise RuntimeError("runtime='litert' needs the litert-torch package (pip install litert-torch)") from exc
    path = Path(path)
    model = deployed(model).eval()
    cin = in_channels or getattr(getattr(model, "spec", None), "in_channels", 3)
    x = torch.zeros(batch, cin, input_size, input_size)
    quant_config = None
    if keep_float and calib is None:
        raise ValueError("keep_float: keeping modules in FP32 applies to an INT8 export (give calib)")
    if calib is not None:
        model, quant_config = _quantize(model, x, calib, keep_float, only)
    with torch.no_grad():
        converted = litert_torch.convert(model, (x,), quant_config=quant_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.tflite")
    converted.export(str(tmp))
    os.replace(tmp, path)
    return path


def _quantize(model: nn.Module, example: torch.Tensor, calib: list[torch.Tensor],
              keep_float: Sequence[str] = (), only: Sequence[str] = ()) -> tuple[nn.Module, Any]:
    """The calibrated PT2E graph and the converter setting that turns its Q/DQ pairs into INT8 kernels
    (without it the converter keeps float weights and quantizes at run time, ten times slower)."""
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calib:
        raise ValueError("calib: INT8 LiteRT export needs calibration images")
    model = with_integer_hardswish(model)
    names = [n for n, _ in model.named_modules() if n]
    selected = quantized_nodes(names, keep_float, only)
    quantizer = filtered_quantizer(selected).set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for x in calib:
            prepared(x)
    return convert_pt2e(prepared, fold_quantize=False), QuantConfig(pt2e_quantizer=quantizer)


def is_tflite(data: bytes) -> bool:
    """True when ``data`` starts like a LiteRT model (FlatBuffer with the ``TFL3`` identifier)."""
    return FORMAT.matches(data)


def litert_interpreter(path: str | Path, threads: int = 1) -> Any:
    """The interpreter of the model at ``path`` with the XNNPACK delegate at ``threads``, tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise RuntimeError("runtime='litert' needs the ai-edge-litert package (pip install ai-edge-litert)") from exc
    FORMAT.check(path)
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter
