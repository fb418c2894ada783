"""``export_detector``: a ``carve finetune detect`` checkpoint shipped as one ONNX file (or OpenVINO
IR) with box decoding and NMS inside the graph, or as an ExecuTorch / LiteRT program that stops
before NMS (:mod:`carve.finetune.detector_programs`: NMS runs after it, in carve's Python
post-processing), and a report comparing its COCO mAP in the runtime
with PyTorch's on real images. With ``int8``, the backbone and head are INT8 (decoding and NMS
stay float; :mod:`carve.finetune.detector_int8`) and the report adds the FP32 graph's mAP, the
agreement of their boxes and both latencies.

What the graph takes and returns is :mod:`carve.finetune.detector_graph`'s; what is left to the
caller is resizing the image to the graph's size (:func:`graph_input`) and mapping the boxes back
to the image (:func:`split_detections`), both a few lines of numpy-level work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from carve.config import Config, setting
from carve.files import write_json
from carve.latency.artefact import open_artefact
from carve.latency.artefact_latency import file_digest, measure_artefact
from carve.latency.onnx_export import export_onnx
from carve.latency.program_formats import PROGRAMS
from carve.latency.protocol import PROTOCOLS
from carve.train import load_checkpoint

from .dataset import DetectionDataset
from .detector_graph import (ONNX_TRANSLATIONS, DetectorGraph, NmsSettings, SingleStageFPNGraph, SSDGraph,
                             graph_input)
from .detector_programs import POSTPROCESSING, PROGRAM_TARGETS, export_program, program_quantization, with_nms
from .sources import FORMATS

DETECTOR_TARGETS = ("onnx", "openvino") + PROGRAM_TARGETS
SUFFIX = {"onnx": ".onnx", "openvino": ".xml"} | {t: PROGRAMS[t].suffix for t in PROGRAM_TARGETS}
RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino"} | {t: PROGRAMS[t].runtime for t in PROGRAM_TARGETS}
EXPORTABLE_HEADS = ("ssdlite", "retinanet", "fcos")
OUTPUT_NAMES = ["boxes", "scores", "labels", "batch_index"]
COMPARED_TOP = 10  # detections per image compared one by one


@dataclass
class DetectorExportConfig(Config):
    """Which detect checkpoint to ship, in which format and input shape, and the images its mAP check uses."""

    model: str | None = setting(None, help="last.pt / best.pt of a carve finetune detect run")
    to: str = setting("onnx", choices=DETECTOR_TARGETS, help="artefact format: ONNX (ONNX Runtime), OpenVINO IR "
                                                             "(both with NMS in the graph), ExecuTorch or LiteRT "
                                                             "(NMS after the program, in Python)")
    out: str | None = setting(None, help="artefact path (default: exports/BACKBONE_HEAD and the format's suffix: "
                                         ".onnx, .xml, .pte, .tflite); the report "
                                         "goes beside it as NAME.report.json")
    size: int | None = setting(None, ">= 32", help="input side in px (default: the run's img_size)")
    batch: int = setting(1, ">= 1", help="images per call, fixed in the graph")
    data: str | None = setting(None, help="dataset of the mAP check (default: the run's data)")
    data_format: str = setting("auto", choices=FORMATS, help="annotation format of data")
    subset: str = setting("val", choices=("val", "all"), help="the run's validation split of data, or all of it")
    parity_images: int = setting(200, ">= 1", help="images the mAP check compares (the first of the subset)")
    threads: int = setting(1, ">= 1", help="runtime threads for the mAP check and the latency")
    latency: bool = setting(True, help="time the artefact here with the latency engine")
    protocol: str = setting("quick", choices=tuple(PROTOCOLS), help="latency protocol")
    int8: bool = setting(False, help="INT8 backbone and head (ONNX: ORT static QDQ; OpenVINO: NNCF; ExecuTorch, "
                                     "LiteRT: PT2E for XNNPACK); decoding and NMS stay float")
    calib: str | None = setting(None, help="detection dataset (COCO, YOLO or VOC, read as --format says) whose "
                                           "images calibrate INT8; the mAP check's images are left out")
    calib_split: str | None = setting(None, help="split of calib (default: the run's training split)")
    calib_images: int = setting(100, ">= 1", help="calibration images, spread over the calib split")

    def check(self) -> None:
        if not self.model:
            raise self.error("model", "expected a detect checkpoint (last.pt or best.pt of carve finetune detect)")
        if self.int8 and not self.calib:
            raise self.error("calib", "--int8 needs calibration images (--calib DATA, a detection dataset: COCO, "
                                      "YOLO or VOC, e.g. the run's data)")


def is_detector_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint ``carve finetune detect`` wrote (read weights-only)."""
    from .detection import CHECKPOINT_KIND

    path = Path(path)
    if path.suffix != ".pt" or not path.is_file():
        return False
    try:
        state = load_checkpoint(path)
    except RuntimeError:
        return False
    return isinstance(state, dict) and state.get("format") == f"carve-{CHECKPOINT_KIND}-1"


def detector_graph(model: nn.Module, meta: dict[str, Any], size: int) -> DetectorGraph:
    """The exportable graph of a loaded detect checkpoint (``load_detector``'s model and metadata)
    for ``size x size`` inputs."""
    from .parameter_efficient import merge_peft, peft_info

    head = meta["config"]["head"]
    if head not in EXPORTABLE_HEADS:
        raise ValueError(f"head: {head} detectors are not exportable yet (exportable: {list(EXPORTABLE_HEADS)})")
    info = peft_info(model)
    if info is not None and info.settings.method == "lora":
        model = merge_peft(model)
    graph = SSDGraph if head == "ssdlite" else SingleStageFPNGraph
    return graph(at_size(model, size).eval(), size).eval()


def at_size(model: nn.Module, size: int) -> nn.Module:
    """The detector set (in place) to run at ``size``: SSD resizes every image to ``size x size``,
    an FPN detector (RetinaNet, FCOS) its short side to ``size``, so a ``size x size`` input
    reaches the backbone as it is."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    transform = getattr(model, "transform", None)
    if isinstance(transform, GeneralizedRCNNTransform):
        transform.min_size, transform.max_size = (size,), max(transform.max_size, size)
        if transform.fixed_size is not None:
            transform.fixed_size = (size, size)
    return model


class SquareInput(nn.Module):
    """A detector that sees each image as the exported graph does: resized to ``size x size``
    (:func:`graph_input`), its boxes scaled back to the image."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        found = self.model([graph_input(im, self.size) for im in images])
        for det, im in zip(found, images):
            h, w = im.shape[-2:]
            det["boxes"] = det["boxes"] * (torch.tensor([w, h, w, h], dtype=torch.float32) / self.size)
        return found


def split_detections(outputs: list[np.ndarray], image_sizes: list[tuple[int, int]], size: int
                     ) -> list[dict[str, np.ndarray]]:
    """The graph's ``(boxes, scores, labels, batch_index)`` as one dict per input image, boxes
    scaled from the ``size x size`` input to each image's ``(height, width)``."""
    boxes, scores, labels, index = outputs
    per_image = []
    for b, (h, w) in enumerate(image_sizes):
        rows = index == b
        scale = np.array([w, h, w, h], np.float32) / np.float32(size)
        per_image.append(dict(boxes=boxes[rows] * scale, scores=scores[rows], labels=labels[rows]))
    return per_image


def runtime_predictions(run_all: Callable[[np.ndarray], list[np.ndarray]], dataset: DetectionDataset, size: int,
                        batch: int) -> dict[int, dict[str, torch.Tensor]]:
    """Detections of the exported graph over ``dataset`` (as ``evaluate.predict`` returns PyTorch's);
    the last batch is padded with blank images. Images that cannot be decoded get no entry."""
    from .transforms import eval_transforms

    data = dataset.with_transforms(eval_transforms())
    out: dict[int, dict[str, torch.Tensor]] = {}
    pending: list[tuple[torch.Tensor, dict]] = []

    def flush() -> None:
        images = [graph_input(im.as_subclass(torch.Tensor), size) for im, _ in pending]
        images += [torch.zeros_like(images[0])] * (batch - len(images))
        found = split_detections(run_all(torch.stack(images).numpy()),
                                 [tuple(im.shape[-2:]) for im, _ in pending], size)
        for (_, target), det in zip(pending, found):
            out[int(target["image_id"])] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in det.items()}
        pending.clear()

    for i in range(len(data)):
        image, target = data[i]
        if image is None:
            continue
        pending.append((image, target))
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return out


def compare_detections(reference: dict[int, dict[str, torch.Tensor]], exported: dict[int, dict[str, torch.Tensor]],
                       top: int = COMPARED_TOP, score_tol: float = 1e-4) -> dict[str, Any]:
    """Image by image, the exported detector's best ``top`` detections against PyTorch's: labels in
    rank order, scores, and for each of PyTorch's the closest exported box with its label and a
    score within ``score_tol`` (so boxes of near-equal score that swap ranks still pair up; those
    with none are counted as ``unpaired_detections``)."""
    same_count = label_hits = compared = unpaired = 0
    box_diff = score_diff = 0.0
    for image_id, ref in reference.items():
        got = exported.get(image_id, dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0),
                                          labels=torch.zeros(0, dtype=torch.int64)))
        same_count += int(len(got["scores"]) == len(ref["scores"]))
        k = min(top, len(ref["scores"]), len(got["scores"]))
        compared += k
        label_hits += int((ref["labels"][:k] == got["labels"][:k]).sum())
        if not k:
            continue
        score_diff = max(score_diff, float((ref["scores"][:k] - got["scores"][:k]).abs().max()))
        pairs = (ref["labels"][:k, None] == got["labels"][None]) & (
            (ref["scores"][:k, None] - got["scores"][None]).abs() <= score_tol)
        distance = (ref["boxes"][:k, None] - got["boxes"][None]).abs().amax(-1).masked_fill(~pairs, float("inf"))
        closest = distance.amin(1)
        unpaired += int(closest.isinf().sum())
        if closest.isfinite().any():
            box_diff = max(box_diff, float(closest[closest.isfinite()].max()))
    return dict(images=len(reference), top=top, same_count_share=same_count / max(len(reference), 1),
                top_label_agreement=label_hits / max(compared, 1), compared_detections=compared,
                unpaired_detections=unpaired, max_box_diff_px=box_diff, max_score_diff=score_diff)


def default_out(cfg: DetectorExportConfig, meta: dict[str, Any]) -> Path:
    tag = "_int8" if cfg.int8 else ""
    return Path("exports") / f"{meta['spec']['name']}_{meta['config']['head']}{tag}{SUFFIX[cfg.to]}"


def _place(src: Path, out: Path) -> None:
    """Copy ``src`` (and an IR's .bin) to ``out`` atomically, the .bin first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    pairs = [(src, out)] + ([(src.with_suffix(".bin"), out.with_suffix(".bin"))] if src.suffix == ".xml" else [])
    for a, b in reversed(pairs):
        tmp = b.with_name(f".{b.name}.{os.getpid()}.tmp")
        shutil.copyfile(a, tmp)
        os.replace(tmp, b)


def export_detector(cfg: DetectorExportConfig) -> dict[str, Any]:
    """Write the artefact ``cfg`` asks for and its report (JSON beside it): COCO mAP of PyTorch and
    of the runtime on the same images, detection-by-detection parity and latency. Returns the report."""
    from .detection import checkpoint_dataset, load_detector

    cfg.check()
    model, meta = load_detector(cfg.model)
    size = cfg.size or int(meta["config"]["img_size"])
    out = Path(cfg.out) if cfg.out else default_out(cfg, meta)
    if out.suffix != SUFFIX[cfg.to]:
        raise ValueError(f"out: {out}: a --to {cfg.to} artefact is written as a {SUFFIX[cfg.to]} file")
    dataset = checkpoint_dataset(meta, cfg.model, cfg.data, cfg.data_format, cfg.subset)
    model = at_size(model, size)
    graph = detector_graph(model, meta, size)
    calib, calib_count = None, 0
    if cfg.int8:  # read before the export, so a wrong --calib fails at once
        from .detector_int8 import calibration_images

        split = cfg.calib_split or meta["config"].get("split")
        calib, calib_count = calibration_images(cfg.calib, cfg.data_format, split, cfg.calib_images, size, cfg.batch,
                                                _held_out(cfg, dataset))
    thresholds = dict(score_thresh=graph.score_thresh, nms_thresh=graph.nms_thresh,
                      topk_candidates=graph.topk_candidates, detections_per_img=graph.detections_per_img)
    if cfg.to in PROGRAM_TARGETS:
        thresholds = dict(topk_candidates=graph.topk_candidates)
        with tempfile.TemporaryDirectory(prefix="carve_detector_export_") as tmp:
            fp32 = export_program(graph, Path(tmp) / f"model{SUFFIX[cfg.to]}", cfg.to, size, cfg.batch)
            if calib is None:
                _place(fp32, out)
                return _report(cfg, model, meta, dataset, size, out, thresholds, nms=graph.nms_settings)
            int8 = export_program(graph, Path(tmp) / f"model_int8{SUFFIX[cfg.to]}", cfg.to, size, cfg.batch, calib)
            _place(int8, out)
            quantization = dict(program_quantization(cfg.to), calib=str(cfg.calib), calib_images=calib_count,
                                batches=len(calib))
            return _report(cfg, model, meta, dataset, size, out, thresholds, fp32, quantization, nms=graph.nms_settings)
    with tempfile.TemporaryDirectory(prefix="carve_detector_export_") as tmp:
        onnx_file = export_onnx(graph, Path(tmp) / "model.onnx", input_size=size, batch=cfg.batch, in_channels=3,
                                translations=ONNX_TRANSLATIONS, names=(["images"], OUTPUT_NAMES))
        fp32 = onnx_file
        if cfg.to == "openvino":
            from carve.latency.openvino_runtime import convert_to_ir

            fp32 = convert_to_ir(onnx_file, Path(tmp) / "model.xml")
        if calib is None:
            _place(fp32, out)
            return _report(cfg, model, meta, dataset, size, out, thresholds)
        from .detector_int8 import quantize_onnx, quantize_openvino

        int8 = Path(tmp) / f"model_int8{SUFFIX[cfg.to]}"
        work = Path(tmp) / "int8"
        work.mkdir()
        done = (quantize_onnx if cfg.to == "onnx" else quantize_openvino)(onnx_file, calib, int8, work)
        _place(int8, out)
        quantization = dict(done, calib=str(cfg.calib), calib_images=calib_count, batches=len(calib))
        return _report(cfg, model, meta, dataset, size, out, thresholds, fp32, quantization)


def _held_out(cfg: DetectorExportConfig, dataset: DetectionDataset) -> DetectionDataset:
    """The images the mAP check uses."""
    return dataset.subset([r.image_id for r in dataset.records[:cfg.parity_images]])


def _report(cfg: DetectorExportConfig, model: nn.Module, meta: dict[str, Any], dataset: DetectionDataset, size: int,
            out: Path, thresholds: dict[str, float], fp32: Path | None = None,
            quantization: dict[str, Any] | None = None, nms: NmsSettings | None = None) -> dict[str, Any]:
    """The report; with ``fp32`` (the FP32 artefact of an INT8 export), INT8 against it as well; with
    ``nms`` (a pre-NMS program), the runtime's detections are the program's followed by that selection."""
    from .evaluate import coco_metrics, evaluate_detector, to_coco_results

    files = [out] + ([out.with_suffix(".bin")] if cfg.to == "openvino" else [])
    report: dict[str, Any] = dict(
        model=str(cfg.model), name=out.stem, head=meta["config"]["head"], backbone=meta["spec"]["name"],
        to=cfg.to, runtime=RUNTIME[cfg.to], artefact=str(out), files=[str(f) for f in files],
        size_bytes=sum(f.stat().st_size for f in files), sha256=file_digest(out), precision="int8" if fp32 else "fp32",
        input_shape=[cfg.batch, 3, size, size], input="RGB in [0, 1], resized to the input size (bilinear)",
        outputs=dict(boxes="[M, 4] x1 y1 x2 y2 in input pixels", scores="[M]", labels="[M] 1-based category index",
                     batch_index="[M] input image of each row"),
        class_names=list(meta["class_names"]), cat_ids=list(meta["cat_ids"]), thresholds_in_graph=thresholds,
        postprocessing="box decoding and class-wise NMS in the graph (ONNX NonMaxSuppression); outside it only "
                       "the boxes' scaling to the image size (carve.finetune.detector_export.split_detections)")
    if nms is not None:
        report["outputs"] = dict(boxes="[B, N, 4] x1 y1 x2 y2 in input pixels, decoded and clipped",
                                 candidates="[B, C, N] score of each box for class column c, -1 where it is no "
                                            "candidate")
        report["thresholds_outside"] = asdict(nms)
        report["postprocessing"] = POSTPROCESSING
    if quantization is not None:
        report["quantization"] = quantization
    images = _held_out(cfg, dataset)

    def runner(path: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
        run_all = open_artefact(path, RUNTIME[cfg.to], cfg.threads).run_all
        return run_all if nms is None else with_nms(run_all, nms)

    run_all = runner(out)
    square = meta["config"]["head"] != "ssdlite"  # SSD resizes to a square itself; the FPN heads keep the aspect
    reference_model = SquareInput(model, size) if square else model
    reference_metrics, reference = evaluate_detector(reference_model, images, batch_size=cfg.batch)
    exported = runtime_predictions(run_all, images, size, cfg.batch)
    ground_truth = images.to_coco()
    ground_truth["images"] = [i for i in ground_truth["images"] if i["id"] in reference]
    ground_truth["annotations"] = [a for a in ground_truth["annotations"] if a["image_id"] in reference]
    exported_metrics = coco_metrics(ground_truth, to_coco_results(exported, images))
    keys = ("AP", "AP50", "AP75")
    report["map"] = dict(images=len(reference), data=str(cfg.data or meta["config"]["data"]), subset=cfg.subset,
                         pytorch={k: reference_metrics[k] for k in keys},
                         exported={k: exported_metrics[k] for k in keys},
                         difference={k: exported_metrics[k] - reference_metrics[k] for k in keys},
                         reference="PyTorch FP32, eval mode, on the graph's square input" if square else
                         "PyTorch FP32, eval mode, on the original images (SSD resizes them to the square itself)")
    if square:
        own = evaluate_detector(model, images, batch_size=cfg.batch)[0]
        report["map"]["pytorch_own_resize"] = {k: own[k] for k in keys}
    report["parity"] = compare_detections(reference, exported)
    if fp32 is not None:
        from .detector_int8 import box_agreement

        float_graph = runtime_predictions(runner(fp32), images, size, cfg.batch)
        float_metrics = coco_metrics(ground_truth, to_coco_results(float_graph, images))
        report["map"]["fp32_graph"] = {k: float_metrics[k] for k in keys}
        report["map"]["int8_minus_fp32_graph"] = {k: exported_metrics[k] - float_metrics[k] for k in keys}
        # INT8 moves scores by more than the FP32 parity's tolerance: pair detections by label alone
        report["parity"] = dict(compare_detections(reference, exported, score_tol=float("inf")),
                                pairing="same label, closest box (any score)")
        report["int8_vs_fp32_graph"] = box_agreement(float_graph, exported)
        report["int8_vs_pytorch"] = box_agreement(reference, exported)
    if cfg.latency:
        r = measure_artefact(out, RUNTIME[cfg.to], cfg.threads, cfg.batch, size, PROTOCOLS[cfg.protocol])
        report["latency"] = _latency(r, cfg)
        if nms is not None:
            report["latency"].update(input="random normal", timed="the program only: NMS and the top-k after it "
                                                                  "(Python) are not timed")
        report["fingerprint"] = r.fingerprint
        if fp32 is not None:
            f = measure_artefact(fp32, RUNTIME[cfg.to], cfg.threads, cfg.batch, size, PROTOCOLS[cfg.protocol])
            report["latency_fp32"] = _latency(f, cfg)
            report["speedup_int8"] = f.median_ms / r.median_ms
    report_path = out.with_name(out.stem + ".report.json")
    write_json(report_path, report)
    report["report"] = str(report_path)
    return report


def _latency(r: Any, cfg: DetectorExportConfig) -> dict[str, Any]:
    return dict(median_ms=r.median_ms, p10_ms=r.p10_ms, p90_ms=r.p90_ms, runs=r.runs, threads=cfg.threads,
                batch=cfg.batch, protocol=cfg.protocol, input="random normal (NMS time depends on the image)")
