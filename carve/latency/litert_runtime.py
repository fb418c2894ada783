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
from .qdq import quantized_nodes
from .program_formats import PROGRAMS

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
    quantizer = _filtered_quantizer(selected).set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for x in calib:
            prepared(x)
    return convert_pt2e(prepared, fold_quantize=False), QuantConfig(pt2e_quantizer=quantizer)


def _filtered_quantizer(selected: Any) -> Any:
    """litert-torch's PT2E quantizer annotating only the nodes the filter ``selected`` accepts (all
    when None); the others stay FP32.

    Its own ``set_module_name`` refuses ``None`` and matches names by a rule that current
    ``torch.export`` module paths do not follow, so the module filter here is torchao's."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    class Filtered(PT2EQuantizer):
        def _annotate_for_static_quantization_config(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            if selected is None:
                return super()._annotate_for_static_quantization_config(model)
            return self._annotate_all_static_patterns(model, self.global_config, selected)

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = annotate_residual_adds(super().annotate(model), self.global_config, selected)
            return share_pooled_scale(model)

    return Filtered()


def annotate_residual_adds(graph: torch.fx.GraphModule, config: Any, selected: Any = None) -> torch.fx.GraphModule:
    """Quantize the additions of two computed tensors (residual shortcuts) that the node filter
    ``selected`` accepts (all when None).

    litert-torch finds additions by the ``source_fn_stack`` that current ``torch.export`` no longer
    records, so residual adds stayed FP32 between a DEQUANTIZE and a QUANTIZE, and where residual
    blocks follow each other the float sum fed the next add directly."""
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in graph.graph.nodes:
        if (node.op != "call_function" or str(node.target) != "aten.add.Tensor"
                or "quantization_annotation" in node.meta or (selected is not None and not selected(node))):
            continue
        inputs = node.args[:2]
        if all(isinstance(a, torch.fx.Node) and a.op == "call_function" and not _is_constant(a) for a in inputs):
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: get_input_act_qspec(config) for a in inputs},
                output_qspec=get_output_act_qspec(config), _annotated=True)
    return graph


POOLS = ("aten.mean.dim", "aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default")
PASS_THROUGH = ("aten.view.default", "aten.reshape.default", "aten.flatten.using_ints", "aten.squeeze.dim",
                "aten.dropout.default")


def share_pooled_scale(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Give the layers a global average pool feeds (through reshapes and dropout) the pool's own
    quantization parameters, which it shares with its input.

    litert-torch's converter drops the requantization PT2E puts between the pool and the next
    layer, but keeps that layer's bias quantized for the dropped scale: on MobileNetV2 the
    classifier's logits came out 37 % off and top-1 agreement with FP32 fell to 52 % (96 % with
    this)."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    for pool in graph.graph.nodes:
        if pool.op != "call_function" or str(pool.target) not in POOLS or "quantization_annotation" not in pool.meta:
            continue
        frontier = [pool]
        while frontier:
            node = frontier.pop()
            for user in node.users:
                if user.op == "call_function" and str(user.target) in PASS_THROUGH:
                    frontier.append(user)
                    continue
                annotation = user.meta.get("quantization_annotation")
                if annotation is not None and annotation.input_qspec_map.get(node) is not None:
                    annotation.input_qspec_map[node] = SharedQuantizationSpec(pool)
    return graph


def _is_constant(node: torch.fx.Node) -> bool:
    """True when ``node`` is computed from parameters or buffers alone (a reshaped constant)."""
    return all(a.op == "get_attr" or (a.op == "call_function" and _is_constant(a)) for a in node.all_input_nodes)


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
