"""A trained single-stage detector (SSDLite, RetinaNet, FCOS) as one exportable graph: a fixed-size
image batch in, boxes, scores and labels out, with box decoding and class-wise non-maximum
suppression inside the graph.

NMS is the custom op ``carve::class_nms`` with the semantics of ONNX ``NonMaxSuppression``
(per batch and class: scores above the threshold, suppression above the IoU, at most N kept),
run in eager PyTorch through ``torchvision.ops.nms`` and written to ONNX as the standard
``NonMaxSuppression`` operator by :data:`ONNX_TRANSLATIONS`, so ONNX Runtime and OpenVINO run it
natively. The outputs have one row per detection, whatever the number:

- ``boxes`` ``[M, 4]`` float32, ``x1, y1, x2, y2`` in pixels of the ``S x S`` input;
- ``scores`` ``[M]`` float32; ``labels`` ``[M]`` int64, 1-based (the detector's own labels);
- ``batch_index`` ``[M]`` int64, the input image each row belongs to.

Rows of one image follow each other, best score first, at most ``detections_per_img`` of them:
the same detections as the torchvision detector's ``postprocess_detections`` (score above
``score_thresh``, the ``topk_candidates`` best per class (SSD) or per feature map (RetinaNet,
FCOS), NMS per class at ``nms_thresh``; then the best overall).

Runtimes without such an operator (ExecuTorch's kernels, LiteRT) get the graph built with
``pre_nms=True``: it stops after box decoding and returns ``boxes`` ``[B, N, 4]`` and the per-class
``candidates`` ``[B, C, N]``, and :func:`select_detections`, the very function the full graph
ends with, runs after it in eager PyTorch, so the rows are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@torch.library.custom_op("carve::class_nms", mutates_args=())
def class_nms(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
              score_threshold: float) -> torch.Tensor:
    """ONNX ``NonMaxSuppression`` in PyTorch: ``boxes`` ``[B, N, 4]`` (x1, y1, x2, y2), ``scores``
    ``[B, C, N]``; returns ``[K, 3]`` int64 rows (batch, class, box index), by batch, then class,
    then score (best first)."""
    from torchvision.ops import nms

    rows = []
    for b in range(boxes.shape[0]):
        for c in range(scores.shape[1]):
            idx = (scores[b, c] > score_threshold).nonzero().flatten()
            kept = idx[nms(boxes[b, idx], scores[b, c, idx], iou_threshold)[:max_per_class]]
            rows.append(torch.stack([torch.full_like(kept, b), torch.full_like(kept, c), kept], 1))
    return torch.cat(rows) if rows else boxes.new_zeros((0, 3), dtype=torch.int64)


@class_nms.register_fake
def _class_nms_shape(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
                     score_threshold: float) -> torch.Tensor:
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept, 3), dtype=torch.int64)


def _class_nms_onnx(boxes: Any, scores: Any, max_per_class: int, iou_threshold: float,
                    score_threshold: float) -> Any:
    from onnxscript import opset18 as op

    return op.NonMaxSuppression(boxes, scores, op.Constant(value_ints=[max_per_class]),
                                op.Constant(value_floats=[iou_threshold]), op.Constant(value_floats=[score_threshold]),
                                center_point_box=0)


def graph_input(image: torch.Tensor, size: int) -> torch.Tensor:
    """A ``3 x H x W`` float image in [0, 1] resized to the graph's ``3 x size x size`` (bilinear,
    as the PyTorch detector resizes it)."""
    return torch.nn.functional.interpolate(image[None], size=(size, size), mode="bilinear",
                                           align_corners=False)[0]


ONNX_TRANSLATIONS = {torch.ops.carve.class_nms.default: _class_nms_onnx}
"""``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``: ``carve::class_nms`` as ONNX NMS."""


@dataclass(frozen=True)
class NmsSettings:
    """The detector's selection after its candidates: score threshold, NMS IoU, detections kept per
    image, and the label of class column 0."""

    score_thresh: float
    nms_thresh: float
    detections_per_img: int
    label_offset: int


def select_detections(boxes: torch.Tensor, candidates: torch.Tensor, settings: NmsSettings
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``boxes`` ``[B, N, 4]`` and ``candidates`` ``[B, C, N]`` (-1 where a box is no candidate for a
    class) to ``(boxes, scores, labels, batch_index)``: per image, NMS per class, then the best
    ``detections_per_img``. The graph runs it inside (exportable to ONNX); a pre-NMS program's
    runner runs it after the program, in eager PyTorch."""
    parts = [_image(boxes[b:b + 1], candidates[b:b + 1], b, settings) for b in range(boxes.shape[0])]
    return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]


def _image(boxes: torch.Tensor, scores: torch.Tensor, index: int, s: NmsSettings
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's detections, best first."""
    kept = class_nms(boxes, scores, s.detections_per_img, s.nms_thresh, s.score_thresh)
    cls, box = kept[:, 1], kept[:, 2]
    score = scores[0, cls, box]
    score, order = score.topk(torch.sym_min(score.shape[0], s.detections_per_img))
    box, cls = box[order], cls[order]
    return boxes[0, box], score, cls + s.label_offset, torch.full_like(cls, index)


class DetectorGraph(nn.Module):
    """What the exportable detectors share: input normalisation, the anchors (or points) for the
    fixed ``S x S`` input as a constant, and per-image NMS with the detector's own thresholds.
    ``forward(images)`` with ``images`` ``[B, 3, S, S]`` RGB in [0, 1] (already resized to
    ``S x S``) returns ``(boxes, scores, labels, batch_index)`` as the module docstring says; ``B``
    is fixed when the graph is exported (each image runs its own NMS). With ``pre_nms`` it returns
    :meth:`candidates` instead, the input of :func:`select_detections`."""

    label_offset: int  # the label of class column 0

    def __init__(self, detector: nn.Module, img_size: int, pre_nms: bool = False):
        super().__init__()
        self.img_size, self.pre_nms = img_size, pre_nms
        self.backbone, self.head, self.box_coder = detector.backbone, detector.head, detector.box_coder
        self.score_thresh, self.nms_thresh = float(detector.score_thresh), float(detector.nms_thresh)
        self.detections_per_img, self.topk_candidates = int(detector.detections_per_img), int(detector.topk_candidates)
        self.register_buffer("mean", torch.tensor(detector.transform.image_mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(detector.transform.image_std).view(1, -1, 1, 1))
        anchors, self.level_sizes = self._anchors(detector, img_size)
        self.register_buffer("anchors", anchors)

    @torch.no_grad()
    def _anchors(self, detector: nn.Module, size: int) -> tuple[torch.Tensor, list[int]]:
        """The anchors of an ``S x S`` image and how many belong to each feature map."""
        from torchvision.models.detection.image_list import ImageList

        was_training = detector.training
        detector.eval()
        x = torch.zeros(1, 3, size, size, device=self.mean.device)
        features = list(self.backbone((x - self.mean) / self.std).values())
        anchors = detector.anchor_generator(ImageList(x, [(size, size)]), features)[0]
        detector.train(was_training)
        cells = [f.shape[-2] * f.shape[-1] for f in features]
        per_cell = anchors.shape[0] // sum(cells)
        return anchors, [c * per_cell for c in cells]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        boxes, candidates = self.candidates(images)
        if self.pre_nms:
            return boxes, candidates
        return select_detections(boxes, candidates, self.nms_settings)

    def candidates(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded, clipped ``boxes`` ``[B, N, 4]`` and the per-class candidate scores ``[B, C, N]``
        (-1 where a box is no candidate for a class): everything before NMS."""
        raise NotImplementedError

    @property
    def nms_settings(self) -> NmsSettings:
        """What the selection after :meth:`candidates` needs."""
        return NmsSettings(self.score_thresh, self.nms_thresh, self.detections_per_img, self.label_offset)

    def _clip(self, boxes: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import boxes as box_ops

        return box_ops.clip_boxes_to_image(boxes, (self.img_size, self.img_size))


class SSDGraph(DetectorGraph):
    """A torchvision ``SSD`` (as ``carve finetune detect`` builds SSDLite): softmax scores, the
    ``topk_candidates`` best anchors of each class, NMS per class."""

    def __init__(self, ssd: nn.Module, img_size: int, pre_nms: bool = False):
        from torchvision.models.detection.ssd import SSD

        if not isinstance(ssd, SSD):
            raise TypeError(f"SSDGraph wraps a torchvision SSD, got {type(ssd).__name__}")
        super().__init__(ssd, img_size, pre_nms)

    label_offset = 1  # column 0 of the softmax is the background

    def candidates(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = list(self.backbone((images - self.mean) / self.std).values())
        out = self.head(features)
        batch, anchors = images.shape[0], self.anchors.shape[0]
        decoded = self.box_coder.decode_single(out["bbox_regression"].reshape(-1, 4), self.anchors.repeat(batch, 1))
        boxes = self._clip(decoded.reshape(batch, anchors, 4))
        scores = torch.softmax(out["cls_logits"], dim=-1)[:, :, 1:].transpose(1, 2)  # [B, classes, anchors]
        best, where = scores.topk(min(self.topk_candidates, anchors), dim=2)
        candidates = torch.full_like(scores, -1.0).scatter(2, where, best)  # the rest can never pass the threshold
        return boxes, candidates


class SingleStageFPNGraph(DetectorGraph):
    """A torchvision ``RetinaNet`` or ``FCOS`` on carve's FPN: per feature map, the
    ``topk_candidates`` best (anchor, class) pairs by sigmoid score (FCOS: times centerness, square
    root), decoded; then NMS per class over all maps. The input side must be a multiple of 32 (the
    PyTorch detector pads to one) and the detector's own resize must leave it as it is."""

    def __init__(self, detector: nn.Module, img_size: int, pre_nms: bool = False):
        from torchvision.models.detection.fcos import FCOS
        from torchvision.models.detection.retinanet import RetinaNet

        if not isinstance(detector, (RetinaNet, FCOS)):
            raise TypeError(f"SingleStageFPNGraph wraps a torchvision RetinaNet or FCOS, got {type(detector).__name__}")
        if img_size % 32:
            raise ValueError(f"size: {detector.__class__.__name__} graphs need a multiple of 32, got {img_size}")
        super().__init__(detector, img_size, pre_nms)
        self.fcos = isinstance(detector, FCOS)

    label_offset = 0

    def candidates(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = list(self.backbone((images - self.mean) / self.std).values())
        out = self.head(features)
        batch, classes = images.shape[0], out["cls_logits"].shape[-1]
        scores = torch.sigmoid(out["cls_logits"])
        if self.fcos:
            scores = torch.sqrt(scores * torch.sigmoid(out["bbox_ctrness"]))
        boxes, best, labels = [], [], []
        for level_scores, level_codes, level_anchors in zip(scores.split(self.level_sizes, 1),
                                                            out["bbox_regression"].split(self.level_sizes, 1),
                                                            self.anchors.split(self.level_sizes, 0)):
            flat = level_scores.flatten(1)  # [B, anchors * classes], as torchvision flattens them
            top, where = flat.topk(min(self.topk_candidates, flat.shape[1]), dim=1)
            anchor = torch.div(where, classes, rounding_mode="floor")
            codes = level_codes.gather(1, anchor[..., None].expand(-1, -1, 4)).reshape(-1, 4)
            decode = self.box_coder.decode if self.fcos else self.box_coder.decode_single
            boxes.append(self._clip(decode(codes, level_anchors[anchor.flatten()]).reshape(batch, -1, 4)))
            best.append(top)
            labels.append(where % classes)
        best_all, labels_all = torch.cat(best, 1), torch.cat(labels, 1)
        columns = torch.arange(classes, device=images.device).view(1, -1, 1)
        candidates = torch.where(labels_all[:, None, :] == columns, best_all[:, None, :], -1.0)  # [B, classes, N]
        return torch.cat(boxes, 1), candidates
