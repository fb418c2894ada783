"""INT8 detector graphs: the backbone and head of an exported detector quantized after training
(ONNX Runtime static QDQ with per-channel weights; OpenVINO through NNCF), calibrated on real images
of a detection dataset prepared as the graph takes them. The graph's own operations (input
normalisation, box decoding, score thresholding, NMS) stay in float.

The exported graph's nodes know the module they come from (the dynamo exporter records it), so the
quantized part is chosen by module: ``backbone`` and ``head``; everything the detector graph's own
``forward`` computes is :data:`POSTPROCESS`. ONNX Runtime calibrates on the graph cut after the
head (NMS's outputs vary in size and are never calibrated); NNCF is told to ignore the rest.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .dataset import DetectionDataset
from .detector_graph import graph_input

NETWORK = ("backbone", "head")  # the modules quantized
POSTPROCESS = "postprocess"  # the module name given to the detector graph's own operations
FLOAT_PART = "input normalisation, box decoding, score thresholding and NMS"


def calibration_images(calib: str | Path, data_format: str, split: str | None, count: int, size: int, batch: int,
                       held_out: DetectionDataset) -> tuple[list[torch.Tensor], int]:
    """Batches ``[batch, 3, size, size]`` of up to ``count`` images of the detection dataset ``calib``
    (its ``split``; every image where it has no splits), spread over it and prepared as the exported
    graph takes them, and how many distinct images they hold; the images of ``held_out`` (the mAP
    check's) are never used."""
    from .sources import open_dataset
    from .transforms import eval_transforms

    dataset = open_dataset(calib, data_format, split)
    seen = {r.file.resolve() for r in held_out.records}
    records = [r for r in dataset.records if r.file.resolve() not in seen]
    if not records:
        raise ValueError(f"calib: {calib} (split {split}) has no image outside the {len(held_out)} the mAP check "
                         "uses; give a dataset (or --calib-split) with other images")
    picked = sorted({int(i) for i in np.linspace(0, len(records) - 1, min(count, len(records))).round()})
    data = dataset.subset([records[i].image_id for i in picked]).with_transforms(eval_transforms())
    images = []
    for i in range(len(data)):
        image, _ = data[i]
        if image is not None:
            images.append(graph_input(image.as_subclass(torch.Tensor), size))
    if not images:
        raise ValueError(f"calib: none of the {len(picked)} images picked from {calib} could be decoded")
    distinct = len(images)
    images += images[:(-len(images)) % batch]  # the graph's batch is fixed: fill the last one
    return [torch.stack(images[i:i + batch]) for i in range(0, len(images), batch)], distinct


def quantize_onnx(fp32: Path, images: list[torch.Tensor], dst: Path, work: Path) -> dict[str, Any]:
    """Write the ONNX detector ``fp32`` to ``dst`` with its backbone and head in QDQ INT8 (ONNX
    Runtime static quantization, per-channel weights, percentile activation ranges); what it did."""
    from carve.latency.qdq import QdqGraph

    graph = QdqGraph.from_onnx(fp32, images, work, calibration="percentile", per_channel=True,
                               top_level=POSTPROCESS)
    quantized = graph.nodes_in(NETWORK)
    if not quantized:
        raise RuntimeError(f"{fp32}: no node of the exported graph comes from {list(NETWORK)}; cannot tell the "
                           "network from the post-processing")
    graph.calibrate(up_to=graph.outputs_of(NETWORK))
    graph.quantize(dst, only=NETWORK)
    return dict(method="ONNX Runtime static quantization, QDQ format, INT8 per-channel weights, UINT8 "
                       "activations, percentile (99.999) calibration", quantized_modules=list(NETWORK),
                nodes_in_quantized_modules=len(quantized), float=FLOAT_PART,
                qdq_nodes=qdq_count(dst))


def quantize_openvino(fp32: Path, images: list[torch.Tensor], xml: Path, work: Path) -> dict[str, Any]:
    """Write the ONNX detector ``fp32`` as an OpenVINO IR at ``xml`` with its backbone and head INT8
    (NNCF post-training quantization, the rest in the ignored scope); what it did."""
    import openvino as ov

    from carve.latency.qdq import name_nodes

    try:
        import nncf
    except ImportError as exc:
        raise RuntimeError("--to openvino --int8 needs NNCF (pip install nncf)") from exc
    named = work / "model_fp32_named.onnx"
    name_nodes(fp32, named, POSTPROCESS)
    model = ov.convert_model(str(named))
    # OpenVINO keeps the ONNX node names ("<module>/<op>_<i>"): all but the network's are ignored
    ignored = nncf.IgnoredScope(patterns=[rf"^(?!({'|'.join(NETWORK)})[./]).*"])
    logging.getLogger("nncf").setLevel(logging.ERROR)  # nncf.set_log_level left pytest's log capture at ERROR
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars are no output
        model = nncf.quantize(model, nncf.Dataset(images, lambda x: x.numpy()), subset_size=len(images),
                              preset=nncf.QuantizationPreset.PERFORMANCE, ignored_scope=ignored)
    fake = [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return dict(method=f"NNCF {nncf.__version__} post-training quantization (PERFORMANCE preset), INT8",
                quantized_modules=list(NETWORK), float=FLOAT_PART, fake_quantize_nodes=len(fake))


def qdq_count(path: Path) -> int:
    """QuantizeLinear and DequantizeLinear nodes of an ONNX file."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


def box_agreement(reference: dict[int, dict[str, torch.Tensor]], other: dict[int, dict[str, torch.Tensor]],
                  top: int = 10, iou: float = 0.5) -> dict[str, Any]:
    """Image by image, each of ``reference``'s best ``top`` detections matched to ``other``'s box
    of the same label that overlaps it most: the mean IoU of the matches, the share matched at IoU
    >= ``iou``, and the largest score difference of those pairs."""
    from torchvision.ops import box_iou

    ious: list[float] = []
    score_diff = 0.0
    for image_id, ref in reference.items():
        got = other.get(image_id)
        k = min(top, len(ref["scores"]))
        if not k:
            continue
        if got is None or not len(got["scores"]):
            ious += [0.0] * k
            continue
        overlap = box_iou(ref["boxes"][:k].float(), got["boxes"].float()).nan_to_num(0.0)  # 0/0: empty boxes
        overlap = overlap.masked_fill(ref["labels"][:k, None] != got["labels"][None], 0.0)
        best, where = overlap.max(1)
        ious += best.tolist()
        good = best >= iou
        if good.any():
            diff = (ref["scores"][:k][good] - got["scores"][where[good]]).abs().max()
            score_diff = max(score_diff, float(diff))
    return dict(images=len(reference), top=top, compared_detections=len(ious),
                mean_iou=float(np.mean(ious)) if ious else 0.0, iou_threshold=iou,
                matched_share=float(np.mean([v >= iou for v in ious])) if ious else 0.0,
                max_score_diff_matched=score_diff)
