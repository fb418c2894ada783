"""A detector trained by ``carve finetune detect`` shipped as an ExecuTorch or LiteRT program that stops
before NMS, with NMS after it in carve's post-processing: the same detections and COCO mAP as
PyTorch on real raccoon images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from carve.cli import main
from carve.finetune import load_detector
from carve.finetune.detection import checkpoint_dataset
from carve.finetune.detector_export import detector_graph, graph_input, split_detections
from carve.finetune.detector_graph import SingleStageFPNGraph
from carve.finetune.detector_programs import with_nms
from carve.finetune.heads import build_detector
from carve.finetune.transforms import eval_transforms
from carve.latency.artefact import open_artefact
from carve.latency.program_formats import PROGRAMS, program_of

from .conftest import DETECTOR_SIZE

SIZE = DETECTOR_SIZE


@pytest.fixture(scope="module", params=["executorch", "litert"])
def program(request: pytest.FixtureRequest, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``carve export CKPT --to executorch|litert``, its report beside it (one export per target)."""
    out = tmp_path_factory.mktemp(request.param) / f"det{PROGRAMS[request.param].suffix}"
    assert main(["export", str(checkpoint), "--to", request.param, "-o", str(out), "--parity-images", "6"]) == 0
    return out


def _images(checkpoint: Path, n: int) -> list[torch.Tensor]:
    _, meta = load_detector(checkpoint)
    data = checkpoint_dataset(meta, checkpoint).with_transforms(eval_transforms())
    return [data[i][0].as_subclass(torch.Tensor) for i in range(n)]


def _pre_nms_then_python_nms(graph: torch.nn.Module, x: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The full graph's outputs, and those of the pre-NMS graph followed by ``with_nms``."""
    with torch.no_grad():
        full = [t.numpy() for t in graph(x)]
        graph.pre_nms = True
        boxes, candidates = graph(x)
        graph.pre_nms = False
    assert boxes.shape[:1] == candidates.shape[:1] == (x.shape[0],) and boxes.shape[1] == candidates.shape[2]
    assert (candidates == -1).any() and ((candidates >= 0) | (candidates == -1)).all()
    return full, with_nms(lambda _: [boxes.numpy(), candidates.numpy()], graph.nms_settings)(x.numpy())


def test_pre_nms_ssd_graph_plus_python_nms_gives_the_full_graphs_detections(checkpoint: Path) -> None:
    model, meta = load_detector(checkpoint)
    graph = detector_graph(model, meta, SIZE)
    full, split = _pre_nms_then_python_nms(graph, torch.stack([graph_input(im, SIZE) for im in _images(checkpoint, 2)]))
    assert len(full[0]) > 0 and set(full[3].tolist()) == {0, 1}
    for a, b in zip(full, split):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("head", ["retinanet", "fcos"])
def test_pre_nms_fpn_graph_plus_python_nms_gives_the_full_graphs_detections(head: str) -> None:
    torch.manual_seed(0)
    model = build_detector(head, "mobilenet_v3_small_075", 2, SIZE, fpn_channels=32).eval()  # FCOS: GroupNorm(32)
    graph = SingleStageFPNGraph(model, 64)
    full, split = _pre_nms_then_python_nms(graph, torch.rand(2, 3, 64, 64))
    assert len(full[0]) > 0 and graph.label_offset == 0
    for a, b in zip(full, split):
        np.testing.assert_array_equal(a, b)


def test_with_nms_refuses_a_program_with_other_outputs(checkpoint: Path) -> None:
    model, meta = load_detector(checkpoint)
    run = with_nms(lambda x: [x], detector_graph(model, meta, SIZE).nms_settings)
    with pytest.raises(ValueError, match="pre-NMS detector program"):
        run(np.zeros((1, 3, SIZE, SIZE), np.float32))


SHAPE_OPS = ("reshape", "view", "slice", "select", "permute", "transpose", "flatten", "squeeze", "unsqueeze")


def _module(node: torch.fx.Node) -> str:
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    return stack[1][0].split(".")[0].removeprefix("L['self'].") if len(stack) > 1 else ""


def _quantization(graph: torch.fx.GraphModule) -> tuple[dict[str, list[bool]], list[tuple[str, str]]]:
    """Per top-level module, whether each convolution takes dequantized activations and weights (INT8
    once lowered); and (module, op, modules of its consumers) of every op whose output a quantize
    node takes."""
    def dequantized(arg: object) -> bool:
        return isinstance(arg, torch.fx.Node) and "dequantize" in str(arg.target)

    convs: dict[str, list[bool]] = {}
    outputs = []
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        if "convolution" in str(node.target) or "conv2d" in str(node.target):
            convs.setdefault(_module(node), []).append(dequantized(node.args[0]) and dequantized(node.args[1]))
        elif "quantize_per" in str(node.target) and "dequantize" not in str(node.target):
            source = node.args[0]
            if isinstance(source, torch.fx.Node) and source.op == "call_function":
                consumers = {_module(user) for dq in node.users for user in dq.users}
                outputs.append((_module(source), str(source.target), consumers))
    return convs, outputs


@pytest.mark.parametrize("to", ["executorch", "litert"])
def test_int8_program_quantizes_the_network_and_keeps_decoding_float(checkpoint: Path, to: str) -> None:
    from carve.finetune.detector_int8 import NETWORK
    from carve.latency import executorch_runtime, litert_runtime
    from carve.latency.qdq import ScopeError

    model, meta = load_detector(checkpoint)
    graph = detector_graph(model, meta, SIZE)
    graph.pre_nms = True
    images = [graph_input(im, SIZE)[None] for im in _images(checkpoint, 3)]
    quantize = executorch_runtime._quantize if to == "executorch" else litert_runtime._quantize
    done = quantize(graph, images[0], images[1:], only=NETWORK)
    converted = done if to == "executorch" else done[0]
    convs, outputs = _quantization(converted)
    assert set(convs) == {"backbone", "head"} and all(all(v) for v in convs.values())  # every conv INT8
    # outside the network only the input entering it and reshapes and slices of the head's INT8 outputs
    # (same scale) are quantized: decoding is float
    network = {"backbone", "head"}
    outside = [(op, users) for module, op, users in outputs if module not in network]
    assert all(users <= network or any(k in op for k in SHAPE_OPS) for op, users in outside), outside
    assert any(users <= network for _, users in outside)  # the normalised input
    with torch.no_grad():
        (boxes, candidates), (qboxes, qcandidates) = graph(images[0]), converted(images[0])
    assert qboxes.shape == boxes.shape and qcandidates.shape == candidates.shape
    assert (qboxes - boxes).abs().median() < 2.0  # px at 96 px: INT8 regressions, float decoding
    with pytest.raises(ScopeError, match="only: no module named \\['neck'\\]"):
        quantize(graph, images[0], images[1:], only=("neck",))


@pytest.mark.slow  # an ExecuTorch lowering or a LiteRT conversion: minutes on the shared machine
def test_program_file_report_and_map_match_pytorch(program: Path) -> None:
    fmt = next(f for f in PROGRAMS.values() if f.suffix == program.suffix)
    assert program_of(program.read_bytes()[:8]) is fmt
    report = json.loads(program.with_name("det.report.json").read_text())
    assert report["to"] == report["runtime"] == fmt.runtime and report["precision"] == "fp32"
    assert list(report["outputs"]) == ["boxes", "candidates"]
    assert "outside" in report["postprocessing"] and "select_detections" in report["postprocessing"]
    assert report["thresholds_in_graph"] == dict(topk_candidates=300)
    assert report["thresholds_outside"] == dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300,
                                                label_offset=1)  # SSDLite's
    assert "program only" in report["latency"]["timed"] and report["latency"]["median_ms"] > 0
    m, p = report["map"], report["parity"]
    assert m["images"] == 6 and m["pytorch"]["AP50"] > 0.1  # a detector that finds raccoons
    assert abs(m["difference"]["AP"]) <= 0.01 and abs(m["difference"]["AP50"]) <= 0.01
    assert p["same_count_share"] >= 5 / 6 and p["top_label_agreement"] == 1.0 and p["max_box_diff_px"] < 0.05


@pytest.mark.slow  # shares the export above
def test_program_alone_with_python_nms_matches_pytorch_on_a_real_image(program: Path, checkpoint: Path) -> None:
    model, meta = load_detector(checkpoint)
    settings = detector_graph(model, meta, SIZE).nms_settings
    (image,) = _images(checkpoint, 1)
    with torch.no_grad():
        want = model([image])[0]
    outputs = with_nms(open_artefact(program).run_all, settings)(graph_input(image, SIZE)[None].numpy())
    got = split_detections(outputs, [tuple(image.shape[-2:])], SIZE)[0]
    top = min(10, len(want["scores"]))
    assert top > 0 and abs(len(got["scores"]) - len(want["scores"])) <= 2
    np.testing.assert_array_equal(got["labels"][:top], want["labels"][:top].numpy())
    np.testing.assert_allclose(got["boxes"][:top], want["boxes"][:top].numpy(), rtol=0, atol=0.05)
    np.testing.assert_allclose(got["scores"][:top], want["scores"][:top].numpy(), rtol=0, atol=1e-4)


@pytest.mark.slow  # two lowerings (FP32 and INT8) per target
@pytest.mark.parametrize("to", ["executorch", "litert"])
def test_int8_program_export_reports_map_against_its_fp32_program(checkpoint: Path, raccoon: Path, to: str,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / f"det_int8{PROGRAMS[to].suffix}"
    assert main(["export", str(checkpoint), "--to", to, "--int8", "--calib", str(raccoon), "-o", str(out),
                 "--parity-images", "6", "--calib-images", "8"]) == 0
    report = json.loads(out.with_name("det_int8.report.json").read_text())
    assert report["precision"] == "int8" and report["quantization"]["quantized_modules"] == ["backbone", "head"]
    assert "PT2E" in report["quantization"]["method"] and report["quantization"]["calib_images"] == 8
    m = report["map"]
    assert set(m["fp32_graph"]) == {"AP", "AP50", "AP75"} and m["pytorch"]["AP50"] > 0.1
    assert abs(m["fp32_graph"]["AP"] - m["pytorch"]["AP"]) <= 0.01  # the FP32 program is PyTorch's detector
    assert report["int8_vs_fp32_graph"]["mean_iou"] > 0.5  # INT8 boxes land where the FP32 program's do
    assert report["latency"]["median_ms"] > 0 and report["latency_fp32"]["median_ms"] > 0 and report["speedup_int8"] > 0
