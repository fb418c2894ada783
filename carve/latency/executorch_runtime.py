"""ExecuTorch with the XNNPACK backend on CPU: a ``.pte`` program written from a model, and loaded to run.

A ``.pte`` file is a FlatBuffer program (magic ``ET12`` at byte 4); loading it runs no Python code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from carve.files import write_atomic
from carve.zoo.mobileone import deployed

from .qdq import quantized_nodes
from .program_formats import PROGRAMS

FORMAT = PROGRAMS["executorch"]


def export_pte(model: nn.Module, path: str | Path, input_size: int = 224, batch: int = 1,
               in_channels: int | None = None, calib: list[torch.Tensor] | None = None,
               keep_float: Sequence[str] = (), only: Sequence[str] = ()) -> Path:
    """``model`` (eval, MobileOne deployed) as an ExecuTorch program lowered to XNNPACK for a fixed
    ``batch x C x size x size`` input; written atomically. With ``calib`` (``batch x C x H x W``
    images) it is quantized to INT8 first with the PT2E XNNPACK quantizer (symmetric, per-channel
    weights), except the modules matching the glob patterns ``keep_float`` (e.g. ``*.se``), which
    stay FP32; ``only``: the submodules (by name) quantized, everything else FP32 (all when empty)."""
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise RuntimeError("runtime='executorch' needs the executorch package (pip install executorch)") from exc
    path = Path(path)
    model = deployed(model).eval()
    cin = in_channels or getattr(getattr(model, "spec", None), "in_channels", 3)
    x = torch.zeros(batch, cin, input_size, input_size)
    if keep_float and calib is None:
        raise ValueError("keep_float: keeping modules in FP32 applies to an INT8 export (give calib)")
    if calib is not None:
        model = _quantize(model, x, calib, keep_float, only)
    with torch.no_grad():
        program = to_edge_transform_and_lower(torch.export.export(model, (x,)),
                                              partitioner=[XnnpackPartitioner()]).to_executorch()
    write_atomic(path, program.buffer)
    return path


def _quantize(model: nn.Module, example: torch.Tensor, calib: list[torch.Tensor],
              keep_float: Sequence[str] = (), only: Sequence[str] = ()) -> nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calib:
        raise ValueError("calib: INT8 ExecuTorch export needs calibration images")
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    names = [n for n, _ in model.named_modules() if n]
    selected = quantized_nodes(names, keep_float, only)
    if selected is not None:  # the other ops are left unannotated: FP32
        quantizer.set_filter_function(selected)
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for x in calib:
            prepared(x)
    return convert_pt2e(prepared)


def is_pte(data: bytes) -> bool:
    """True when ``data`` starts like an ExecuTorch program (FlatBuffer with the ``ET12`` identifier)."""
    return FORMAT.matches(data)


def executorch_method(path: str | Path, threads: int = 1) -> Any:
    """The ``forward`` method of the program at ``path``, loaded with XNNPACK's pool at ``threads``."""
    try:
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise RuntimeError("runtime='executorch' needs the executorch package (pip install executorch)") from exc
    FORMAT.check(path)
    portable_lib._unsafe_reset_threadpool(threads)
    return Runtime.get().load_program(str(path)).load_method("forward")
