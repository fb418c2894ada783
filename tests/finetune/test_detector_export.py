"""A detector trained by ``carve finetune detect`` shipped as ONNX (and OpenVINO IR): NMS in the graph,
detections and COCO mAP matching PyTorch's on real raccoon images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from carve.cli import main
from carve.finetune import DetectConfig, detect, load_detector
from carve.finetune.detection import checkpoint_dataset
from carve.finetune.detector_export import (
    DetectorExportConfig,
    detector_graph,
    export_detector,
    graph_input,
    is_detector_checkpoint,
    split_detections,
)
from carve.finetune.detector_graph import class_nms
from carve.finetune.transforms import eval_transforms
from carve.latency.artefact import open_artefact

from .conftest import copy_raccoon

SIZE = 96


@pytest.fixture(scope="module")
def raccoon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 6 validation raccoon images."""
    return copy_raccoon(tmp_path_factory.mktemp("raccoon") / "data", train=8, val=6)


def _detect(root: Path, out: Path, **kw) -> Path:
    torch.set_num_threads(1)
    base = dict(backbone="mobilenet_v3_small_075", data=str(root), split="train", val_split="val", out_dir=str(out),
                img_size=SIZE, batch_size=4, lr=0.05, warmup_epochs=0, augment="flip", progress=False,
                tensorboard=False, examples=0, fpn_channels=32)
    return detect(DetectConfig(**(base | kw))).checkpoint


@pytest.fixture(scope="module")
def checkpoint(raccoon: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SSDLite trained for 6 steps on the raccoon images."""
    return _detect(raccoon, tmp_path_factory.mktemp("run"), epochs=3)


# After a few steps RetinaNet and FCOS still score every position of an anchor alike (their
# classification tower starts near zero and the classifier at the 0.01 prior), and NMS among equal
# scores keeps whichever comes first; a classification branch drawn at full scale gives distinct
# scores, so the comparisons below are exact. The BatchNorm statistics stay as trained: re-estimated
# ones (bn_recalibration) scale RetinaNet's features up until the drawn branch saturates at 1.0.
@pytest.fixture(scope="module", params=["retinanet", "fcos"])
def fpn_checkpoint(request: pytest.FixtureRequest, raccoon: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RetinaNet or FCOS checkpoint after one step, its classification branch drawn with seed 0."""
    from carve.train import load_checkpoint

    path = _detect(raccoon, tmp_path_factory.mktemp(request.param), head=request.param, epochs=1, max_steps=1,
                   bn_recalibration=0)
    state = load_checkpoint(path)
    g = torch.Generator().manual_seed(0)
    for name, value in state["model"].items():
        tower = name.startswith("head.classification_head.") and value.dim() == 4
        if tower or "cls_logits" in name or "bbox_ctrness" in name:
            std = 1.0 if "cls_logits" in name or "bbox_ctrness" in name else value[0].numel() ** -0.5
            state["model"][name] = torch.randn(value.shape, generator=g) * std
    torch.save(state, path)
    return path


def _images(checkpoint: Path, n: int) -> tuple[list[torch.Tensor], list[dict]]:
    _, meta = load_detector(checkpoint)
    data = checkpoint_dataset(meta, checkpoint).with_transforms(eval_transforms())
    pairs = [data[i] for i in range(n)]
    return [im.as_subclass(torch.Tensor) for im, _ in pairs], [t for _, t in pairs]


def test_class_nms_keeps_what_torchvision_keeps_per_class() -> None:
    from torchvision.ops import batched_nms

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 60, 2, generator=g) * 80
    boxes = torch.cat([xy, xy + torch.rand(2, 60, 2, generator=g) * 40 + 1], -1)
    scores = torch.rand(2, 3, 60, generator=g)
    kept = class_nms(boxes, scores, 7, 0.4, 0.2)
    labels, idx = torch.arange(3).repeat_interleave(60), torch.arange(60).repeat(3)
    for b in range(2):
        flat = scores[b].flatten()
        ok = flat > 0.2
        order = batched_nms(boxes[b, idx[ok]], flat[ok], labels[ok], 0.4)  # best first, all classes
        found = list(zip(labels[ok][order].tolist(), idx[ok][order].tolist()))
        want = [w for c in range(3) for w in [w for w in found if w[0] == c][:7]]  # the 7 best of each class
        rows = kept[kept[:, 0] == b]
        assert [(c, i) for _, c, i in rows.tolist()] == want  # by class, then best first


@pytest.mark.parametrize("size", [SIZE, 64])  # the run's img_size, and another the detector is set to
def test_graph_gives_the_detectors_own_detections(checkpoint: Path, size: int) -> None:
    model, meta = load_detector(checkpoint)
    graph = detector_graph(model, meta, size)
    images, _ = _images(checkpoint, 2)
    x = torch.stack([graph_input(im, size) for im in images])
    with torch.no_grad():
        want = model(list(x))
        boxes, scores, labels, index = graph(x)
    assert index.tolist() == sorted(index.tolist()) and set(index.tolist()) == {0, 1}
    for b, ref in enumerate(want):
        rows = index == b
        assert 0 < int(rows.sum()) <= 300 and int(rows.sum()) == len(ref["scores"])
        torch.testing.assert_close(boxes[rows], ref["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(scores[rows], ref["scores"], rtol=0, atol=1e-6)
        assert torch.equal(labels[rows], ref["labels"])


def test_fpn_graph_gives_the_detectors_own_detections(fpn_checkpoint: Path) -> None:
    model, meta = load_detector(fpn_checkpoint)
    graph = detector_graph(model, meta, SIZE)
    images, _ = _images(fpn_checkpoint, 2)
    x = torch.stack([graph_input(im, SIZE) for im in images])
    with torch.no_grad():
        want = model(list(x))  # a square input at img_size: the detector's own resize leaves it as it is
        boxes, scores, labels, index = graph(x)
    for b, ref in enumerate(want):
        rows = index == b
        assert 0 < int(rows.sum()) == len(ref["scores"])
        torch.testing.assert_close(boxes[rows], ref["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(scores[rows], ref["scores"], rtol=0, atol=1e-6)
        assert torch.equal(labels[rows], ref["labels"])
    with pytest.raises(ValueError, match="multiple of 32"):
        detector_graph(model, meta, 80)


@pytest.mark.slow  # a dynamo export of an FPN detector: ~50 s here
def test_fpn_detector_exports_with_detections_and_map_matching_pytorch(fpn_checkpoint: Path, tmp_path: Path) -> None:
    report = export_detector(DetectorExportConfig(model=str(fpn_checkpoint), out=str(tmp_path / "d.onnx"),
                                                  latency=False))
    m = report["map"]
    assert m["images"] == 6 and "pytorch_own_resize" in m and "square input" in m["reference"]
    assert abs(m["difference"]["AP"]) <= 0.01 and abs(m["difference"]["AP50"]) <= 0.01
    p = report["parity"]
    assert p["same_count_share"] == 1.0 and p["top_label_agreement"] == 1.0 and p["max_box_diff_px"] < 0.01


def test_cli_exports_a_detect_checkpoint_whose_onnx_detections_and_map_match_pytorch(checkpoint: Path,
                                                                                        tmp_path: Path) -> None:
    out = tmp_path / "det.onnx"
    assert main(["export", str(checkpoint), "--to", "onnx", "-o", str(out), "--parity-images", "6"]) == 0
    report = json.loads(out.with_name("det.report.json").read_text())
    assert report["input_shape"] == [1, 3, SIZE, SIZE] and report["map"]["images"] == 6
    assert report["thresholds_in_graph"] == dict(score_thresh=0.001, nms_thresh=0.55, topk_candidates=300,
                                                 detections_per_img=300)  # SSDLite's
    pytorch, exported = report["map"]["pytorch"], report["map"]["exported"]
    assert pytorch["AP50"] > 0.1  # a detector that finds raccoons, so the comparison means something
    assert abs(exported["AP"] - pytorch["AP"]) <= 0.01 and abs(exported["AP50"] - pytorch["AP50"]) <= 0.01
    assert report["parity"]["top_label_agreement"] == 1.0 and report["parity"]["max_box_diff_px"] < 0.01
    assert report["latency"]["median_ms"] > 0
    graph = onnx.load(str(out)).graph
    assert "NonMaxSuppression" in {n.op_type for n in graph.node}
    assert [o.name for o in graph.output] == ["boxes", "scores", "labels", "batch_index"]

    # the file alone, on a real image, against PyTorch on the original image
    model, _ = load_detector(checkpoint)
    (image,), _ = _images(checkpoint, 1)
    with torch.no_grad():
        want = model([image])[0]
    outputs = open_artefact(out).run_all(graph_input(image, SIZE)[None].numpy())
    got = split_detections(outputs, [tuple(image.shape[-2:])], SIZE)[0]
    top = min(10, len(want["scores"]))
    assert top > 0 and len(got["scores"]) == len(want["scores"])
    np.testing.assert_array_equal(got["labels"][:top], want["labels"][:top].numpy())
    np.testing.assert_allclose(got["boxes"][:top], want["boxes"][:top].numpy(), rtol=0, atol=0.01)
    np.testing.assert_allclose(got["scores"][:top], want["scores"][:top].numpy(), rtol=0, atol=1e-5)


@pytest.mark.slow  # one more dynamo export and an OpenVINO conversion: ~25 s here
def test_openvino_ir_with_a_batch_of_four_matches_pytorch(checkpoint: Path, tmp_path: Path) -> None:
    report = export_detector(DetectorExportConfig(model=str(checkpoint), to="openvino", out=str(tmp_path / "d.xml"),
                                                  batch=4, latency=False))
    assert (tmp_path / "d.bin").is_file() and report["input_shape"] == [4, 3, SIZE, SIZE]
    assert report["map"]["images"] == 6  # one full batch and one padded with blank images
    assert abs(report["map"]["difference"]["AP"]) <= 0.01 and report["parity"]["top_label_agreement"] == 1.0


def test_split_detections_scales_boxes_to_each_image() -> None:
    boxes = np.array([[0, 0, 48, 96], [10, 20, 30, 40], [96, 96, 96, 96]], np.float32)
    outputs = [boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 1]), np.array([0, 0, 1])]
    first, second = split_detections(outputs, [(192, 96), (48, 48)], 96)
    np.testing.assert_allclose(first["boxes"], [[0, 0, 48, 192], [10, 40, 30, 80]])
    np.testing.assert_allclose(second["boxes"], [[48, 48, 48, 48]])
    assert first["labels"].tolist() == [1, 2] and second["scores"].tolist() == [pytest.approx(0.7)]


def test_what_is_not_a_detector_or_not_exportable_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    model, meta = load_detector(checkpoint)
    assert is_detector_checkpoint(checkpoint)
    plain = tmp_path / "weights.pt"
    torch.save({"format": "carve-train-1", "model": {}}, plain)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    assert not any(is_detector_checkpoint(p) for p in (plain, tmp_path / "missing.pt", tmp_path / "tensor.pt"))
    with pytest.raises(ValueError, match="fasterrcnn detectors are not exportable"):  # RoIAlign on proposals
        detector_graph(model, dict(meta, config=dict(meta["config"], head="fasterrcnn")), SIZE)
    assert main(["export", str(checkpoint), "--int8", "--calib", str(tmp_path)]) == 2
    assert main(["export", str(checkpoint), "--to", "coreml"]) == 2  # not a detector target
    with pytest.raises(ValueError, match="DetectorExportConfig.model"):
        DetectorExportConfig()


@pytest.mark.slow  # a peft run and one more dynamo export: ~40 s here
def test_lora_checkpoint_exports_merged_with_map_matching_pytorch(raccoon: Path, tmp_path: Path) -> None:
    from carve.zoo import create_model, save_weights

    torch.manual_seed(0)
    base = save_weights(create_model("mobilenet_v3_small_075"), tmp_path / "base.safetensors")
    path = _detect(raccoon, tmp_path / "run", pretrained=str(base), peft="lora:r=2,targets=all", epochs=2)
    report = export_detector(DetectorExportConfig(model=str(path), out=str(tmp_path / "d.onnx"), latency=False))
    graph = onnx.load(str(tmp_path / "d.onnx")).graph
    assert not any("lora" in init.name for init in graph.initializer)  # folded into the weights
    assert abs(report["map"]["difference"]["AP"]) <= 0.01 and report["parity"]["top_label_agreement"] == 1.0
