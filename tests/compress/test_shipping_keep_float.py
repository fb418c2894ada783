"""``export_model`` with ``keep_float``: the matching modules really stay FP32 in the ONNX and OpenVINO artefacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from carve.compress.shipping import ExportConfig, export_model

from ..cli.test_export import CIFAR, TINY


def _export(tmp_path: Path, to: str, out: str, keep_float: list[str]) -> dict:
    if not (CIFAR / "test").is_dir():
        pytest.skip("CIFAR-10 not found at ../shared/data/cifar10")
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY))
    torch.manual_seed(0)  # random weights: INT8 agreement of an untrained net depends on the draw
    report = export_model(ExportConfig(model=str(spec), to=to, out=str(tmp_path / out), int8=True, calib=str(CIFAR),
                                       calib_per_class=4, size=32, data=str(CIFAR), parity_images=60, latency=False,
                                       keep_float=keep_float))
    assert report["parity"]["top1_agreement"] >= 0.8 and report["parity"]["max_abs_diff"] > 1e-4
    if not keep_float:
        assert "keep_float" not in report
        return report
    # blocks.0.0.se is an Identity (no SE in the first stage): matched, with nothing to keep
    assert report["keep_float"] == ["*.se"] and report["kept_float_modules"] == ["blocks.0.0.se", "blocks.1.0.se"]
    return report


def test_onnx_int8_keeps_the_se_convolutions_in_float(tmp_path: Path) -> None:
    import onnx

    def conv_weights(name: str) -> dict[str, str | None]:  # Conv -> the op making its weights (None: FP32 data)
        graph = onnx.load(str(tmp_path / name)).graph
        producer = {t: n.op_type for n in graph.node for t in n.output}
        return {n.name: producer.get(n.input[1]) for n in graph.node if n.op_type == "Conv"}

    _export(tmp_path, "onnx", "int8.onnx", [])
    _export(tmp_path, "onnx", "kept.onnx", ["*.se"])
    int8, kept = conv_weights("int8.onnx"), conv_weights("kept.onnx")
    se = {name for name in kept if name.startswith("blocks.1.0.se.")}
    assert len(se) == 2 and all(kept[name] is None for name in se)  # FP32 initializers, no DequantizeLinear
    assert all(op == "DequantizeLinear" for name, op in kept.items() if name not in se)
    assert set(int8.values()) == {"DequantizeLinear"}  # without keep_float the SE convolutions are INT8 too


def test_openvino_int8_keeps_the_se_convolutions_in_float(tmp_path: Path) -> None:
    import openvino as ov

    _export(tmp_path, "openvino", "int8.xml", [])
    _export(tmp_path, "openvino", "kept.xml", ["*.se"])

    def int8_weights(op: ov.Node) -> bool:  # a FakeQuantize, or an 8-bit constant dequantized, feeds the weights
        src = op.input_value(1).get_node()
        while src.get_type_name() != "Constant":
            if src.get_type_name() == "FakeQuantize":
                return True
            src = src.input_value(0).get_node()
        return src.get_element_type() in (ov.Type.i8, ov.Type.u8)

    def int8_convs(name: str) -> dict[str, bool]:
        model = ov.Core().read_model(str(tmp_path / name))
        return {op.get_friendly_name(): int8_weights(op) for op in model.get_ordered_ops()
                if op.get_type_name() == "Convolution"}

    int8, kept = int8_convs("int8.xml"), int8_convs("kept.xml")
    se = [name for name in kept if name.startswith("blocks.1.0.se.")]
    assert len(se) == 2 and not any(kept[name] for name in se)
    assert all(v for name, v in kept.items() if name not in se) and all(int8.values())
