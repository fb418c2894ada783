"""litert-torch's PT2E quantizer, completed where it misses what current ``torch.export`` graphs hold.

Its annotators find additions, concatenations and pools by the ``source_fn_stack`` that
``torch.export`` no longer records, and its converter drops the requantization after a global pool;
each function here annotates one of those from the graph itself.
"""

from __future__ import annotations

from typing import Any

import torch


def filtered_quantizer(selected: Any) -> Any:
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
            model = annotate_concatenations(model, self.global_config, selected)
            return share_pooled_scale(model)

    return Filtered()


def annotate_residual_adds(graph: torch.fx.GraphModule, config: Any, selected: Any = None) -> torch.fx.GraphModule:
    """Quantize the additions of two computed tensors (residual shortcuts) that the node filter
    ``selected`` accepts (all when None).

    litert-torch finds additions by the ``source_fn_stack`` that current ``torch.export`` no longer
    records, so residual adds stayed FP32 between a DEQUANTIZE and a QUANTIZE, and where residual
    blocks follow each other the float sum fed the next add directly."""
    from litert_torch.quantize.pt2e_quantizer_utils import (
        get_input_act_qspec,
        get_output_act_qspec,
    )
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


SHAPE_ONLY = ("aten.view.default", "aten.reshape.default", "aten.transpose.int", "aten.permute.default")


def annotate_concatenations(graph: torch.fx.GraphModule, config: Any, selected: Any = None) -> torch.fx.GraphModule:
    """Quantize the concatenations of computed tensors that ``selected`` accepts (all when None) with
    one scale for every input and the output, and the reshapes and transposes after them (a channel
    shuffle) with that same scale: the single scale XNNPACK's INT8 concatenation takes.

    litert-torch finds concatenations by ``source_fn_stack`` too, so in ShuffleNetV2 every unit's
    concatenation and channel shuffle stayed FP32 in the PT2E graph, and the half of the channels
    a unit passes through was never quantized there, while the converter ran them in INT8 with
    scales of its own: the graph stopped describing the program."""
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    for node in graph.graph.nodes:
        if (node.op != "call_function" or str(node.target) != "aten.cat.default"
                or "quantization_annotation" in node.meta or (selected is not None and not selected(node))):
            continue
        inputs = node.args[0]
        if not all(isinstance(a, torch.fx.Node) and a.op == "call_function" and not _is_constant(a) for a in inputs):
            continue
        shared = SharedQuantizationSpec((inputs[0], node))
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={inputs[0]: get_input_act_qspec(config)} | {a: shared for a in inputs[1:]},
            output_qspec=shared, _annotated=True)
        frontier = [node]
        while frontier:
            producer = frontier.pop()
            for user in producer.users:
                if (user.op == "call_function" and str(user.target) in SHAPE_ONLY
                        and "quantization_annotation" not in user.meta):
                    same = SharedQuantizationSpec(producer)
                    user.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={producer: same}, output_qspec=same, _annotated=True)
                    frontier.append(user)
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


__all__ = ["annotate_concatenations", "annotate_residual_adds", "filtered_quantizer", "share_pooled_scale"]
