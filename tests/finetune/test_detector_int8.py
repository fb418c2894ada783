"""INT8 detectors: a tiny SSDLite trained on raccoon images exported with its backbone and head in
INT8 (ONNX Runtime QDQ, OpenVINO NNCF) and decoding + NMS in float, calibrated on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torchvision.ops import box_iou

from carve.cli import main
from carve.finetune import load_detector
from carve.finetune.detection import checkpoint_dataset
from carve.finetune.detector_export import DetectorExportConfig, export_detector, graph_input, split_detections
from carve.finetune.detector_int8 import box_agreement, calibration_images
from carve.finetune.transforms import eval_transforms
from carve.latency.artefact import open_artefact

from .conftest import DETECTOR_SIZE

SIZE = DETECTOR_SIZE
QDQ = ("QuantizeLinear", "DequantizeLinear")


@pytest.fixture(scope="module")
def int8_onnx(checkpoint: Path, raccoon: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``carve export CKPT --int8 --calib RACCOON`` to ONNX: calibrated on the 8 training images."""
    out = tmp_path_factory.mktemp("int8") / "det_int8.onnx"
    assert main(["export", str(checkpoint), "--to", "onnx", "--int8", "--calib", str(raccoon), "-o", str(out),
                 "--parity-images", "6", "--calib-images", "8"]) == 0
    return out


def _downstream(graph: onnx.GraphProto, start: set[str]) -> set[str]:
    """Names of the nodes fed (directly or not) by the nodes named ``start``."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    seen, todo = set(), [n for n in graph.node if n.name in start]
    while todo:
        n = todo.pop()
        for t in n.output:
            for c in consumers.get(t, []):
                if c.name not in seen:
                    seen.add(c.name)
                    todo.append(c)
    return seen


def test_int8_onnx_quantizes_the_network_and_leaves_decoding_and_nms_float(int8_onnx: Path) -> None:
    graph = onnx.load(str(int8_onnx)).graph
    produced_by = {t: n for n in graph.node for t in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    fed_int8 = [n for n in convs if all(produced_by[t].op_type == "DequantizeLinear" for t in n.input[:2])]
    assert sum(n.name.startswith("backbone") for n in fed_int8) >= 20  # activations and weights through Q/DQ
    assert any(n.name.startswith("head") for n in fed_int8)
    assert len(fed_int8) == len(convs)
    # the detector graph's own operations after the head: decoding, softmax, top-k, NMS, gathers
    post = {n.name for n in graph.node if n.name.startswith("postprocess/")}
    upstream_of_convs = post - _downstream(graph, {n.name for n in graph.node if n.op_type == "Conv"})
    decoding = post - upstream_of_convs  # not the input normalisation
    assert {"NonMaxSuppression", "Softmax", "Exp", "TopK"} <= {n.op_type for n in graph.node if n.name in decoding}
    after = _downstream(graph, decoding) | decoding
    assert not [n.name for n in graph.node if n.name in after and (n.op_type in QDQ or "QLinear" in n.op_type)]
    reference = {"boxes": 2, "scores": 1, "labels": 1, "batch_index": 1}
    assert {o.name: len(o.type.tensor_type.shape.dim) for o in graph.output} == reference


def test_int8_onnx_boxes_agree_with_pytorch_on_a_real_image_and_the_report_says_so(
        int8_onnx: Path, checkpoint: Path) -> None:
    model, meta = load_detector(checkpoint)
    data = checkpoint_dataset(meta, checkpoint).with_transforms(eval_transforms())
    image = data[0][0].as_subclass(torch.Tensor)
    with torch.no_grad():
        want = model([image])[0]
    outputs = open_artefact(int8_onnx, "onnxruntime", 1).run_all(graph_input(image, SIZE)[None].numpy())
    assert [o.dtype for o in outputs] == [np.float32, np.float32, np.int64, np.int64]
    got = split_detections(outputs, [tuple(image.shape[-2:])], SIZE)[0]
    top = min(5, len(want["scores"]))
    assert top > 0 and len(got["scores"]) > 0
    iou = box_iou(want["boxes"][:top], torch.from_numpy(got["boxes"]))
    assert float(iou.max(1).values.min()) > 0.7  # every one of PyTorch's best boxes has an INT8 twin

    report = json.loads(int8_onnx.with_name("det_int8.report.json").read_text())
    assert report["precision"] == "int8" and report["quantization"]["calib_images"] == 8
    assert report["quantization"]["qdq_nodes"] > 100
    m = report["map"]
    assert m["pytorch"]["AP50"] > 0.1 and abs(m["exported"]["AP50"] - m["pytorch"]["AP50"]) <= 0.1
    assert abs(m["fp32_graph"]["AP"] - m["pytorch"]["AP"]) <= 0.01  # the FP32 graph is PyTorch's detector
    agreement = report["int8_vs_fp32_graph"]
    assert agreement["compared_detections"] == 60 and agreement["mean_iou"] > 0.8
    assert agreement["matched_share"] >= 0.9
    assert report["latency"]["median_ms"] > 0 and report["latency_fp32"]["median_ms"] > 0
    assert report["speedup_int8"] == pytest.approx(report["latency_fp32"]["median_ms"] /
                                                   report["latency"]["median_ms"])


@pytest.mark.slow  # an OpenVINO conversion and NNCF on top of the export: ~25 s here
def test_int8_openvino_quantizes_the_network_with_boxes_agreeing(checkpoint: Path, raccoon: Path,
                                                                 tmp_path: Path) -> None:
    import openvino as ov

    report = export_detector(DetectorExportConfig(model=str(checkpoint), to="openvino", out=str(tmp_path / "d.xml"),
                                                  int8=True, calib=str(raccoon), calib_images=4, latency=False))
    assert report["precision"] == "int8" and report["quantization"]["fake_quantize_nodes"] > 20
    model = ov.Core().read_model(str(tmp_path / "d.xml"))
    fed = [i.get_node() for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
           for out in op.outputs() for i in out.get_target_inputs()]
    assert fed and all(n.get_friendly_name().startswith(("backbone", "head")) for n in fed)
    assert [o.get_any_name() for o in model.outputs] == ["boxes", "scores", "labels", "batch_index"]
    assert report["int8_vs_fp32_graph"]["mean_iou"] > 0.8


def test_int8_needs_calibration_images_named_by_their_flag(checkpoint: Path, raccoon: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(checkpoint), "--int8", "-o", str(tmp_path / "d.onnx")]) == 2
    assert "--calib" in capsys.readouterr().err
    with pytest.raises(ValueError, match="calib"):
        DetectorExportConfig(model=str(checkpoint), int8=True).check()
    assert main(["export", str(checkpoint), "--int8", "--calib", str(tmp_path / "nothing")]) == 2
    _, meta = load_detector(checkpoint)
    held_out = checkpoint_dataset(meta, checkpoint)
    with pytest.raises(ValueError, match="calib: .* no image outside"):  # the val split is the mAP check's
        calibration_images(raccoon, "auto", "val", 10, SIZE, 1, held_out)
    batches, count = calibration_images(raccoon, "auto", "train", 3, SIZE, 2, held_out)
    assert count == 3
    assert [tuple(b.shape) for b in batches] == [(2, 3, SIZE, SIZE)] * 2  # 3 images, the last batch filled
    assert 0.0 <= float(batches[0].min()) and float(batches[0].max()) <= 1.0


def test_box_agreement_matches_boxes_of_the_same_label_by_iou() -> None:
    ref = {1: dict(boxes=torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]), scores=torch.tensor([0.9, 0.8]),
                   labels=torch.tensor([1, 2]))}
    other = {1: dict(boxes=torch.tensor([[20.0, 20, 40, 40], [0, 0, 10, 5]]), scores=torch.tensor([0.7, 0.85]),
                     labels=torch.tensor([2, 1]))}
    a = box_agreement(ref, other)
    assert a["compared_detections"] == 2 and a["mean_iou"] == pytest.approx(0.75)
    assert a["matched_share"] == 1.0 and a["max_score_diff_matched"] == pytest.approx(0.1)
    other[1]["labels"] = torch.tensor([1, 2])  # same boxes, swapped labels: nothing matches
    assert box_agreement(ref, other)["matched_share"] == 0.0
    flat = {1: dict(boxes=torch.tensor([[5.0, 5, 5, 5]]), scores=torch.tensor([0.5]), labels=torch.tensor([1]))}
    assert box_agreement(flat, flat)["mean_iou"] == 0.0  # boxes of no area overlap nothing (not NaN)
