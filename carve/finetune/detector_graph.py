"""A trained SSDLite as one exportable graph: a fixed-size image batch in, boxes, scores and labels
out, with box decoding and class-wise non-maximum suppression inside the graph.

NMS is the custom op ``carve::class_nms`` with the semantics of ONNX ``NonMaxSuppression``
(per batch and class: scores above the threshold, suppression above the IoU, at most N kept),
run in eager PyTorch through ``torchvision.ops.nms`` and written to ONNX as the standard
``NonMaxSuppression`` operator by :data:`ONNX_TRANSLATIONS`, so ONNX Runtime and OpenVINO run it
natively. The outputs have one row per detection, whatever the number:

- ``boxes`` ``[M, 4]`` float32, ``x1, y1, x2, y2`` in pixels of the ``S x S`` input;
- ``scores`` ``[M]`` float32; ``labels`` ``[M]`` int64, 1-based (0 is the background);
- ``batch_index`` ``[M]`` int64, the input image each row belongs to.

Rows of one image follow each other, best score first, at most ``detections_per_img`` of them:
the same detections as torchvision's ``SSD.postprocess_detections`` (per class: score above
``score_thresh``, the ``topk_candidates`` best, NMS at ``nms_thresh``; then the best overall).
"""

from __future__ import annotations

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


ONNX_TRANSLATIONS = {torch.ops.carve.class_nms.default: _class_nms_onnx}
"""``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``: ``carve::class_nms`` as ONNX NMS."""


class SSDGraph(nn.Module):
    """A torchvision ``SSD`` (as ``carve finetune detect`` builds SSDLite) for a fixed input:
    ``forward(images)`` with ``images`` ``[B, 3, S, S]`` RGB in [0, 1] (already resized to
    ``S x S``) returns ``(boxes, scores, labels, batch_index)`` as the module docstring says.

    ``B`` is fixed when the graph is exported (each image runs its own NMS). The anchors for
    ``S x S`` are computed once here and stored as a constant.
    """

    def __init__(self, ssd: nn.Module, img_size: int):
        super().__init__()
        from torchvision.models.detection.ssd import SSD

        if not isinstance(ssd, SSD):
            raise TypeError(f"SSDGraph wraps a torchvision SSD, got {type(ssd).__name__}")
        self.img_size = img_size
        self.backbone, self.head, self.box_coder = ssd.backbone, ssd.head, ssd.box_coder
        self.score_thresh, self.nms_thresh = float(ssd.score_thresh), float(ssd.nms_thresh)
        self.detections_per_img, self.topk_candidates = int(ssd.detections_per_img), int(ssd.topk_candidates)
        self.register_buffer("mean", torch.tensor(ssd.transform.image_mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(ssd.transform.image_std).view(1, -1, 1, 1))
        self.register_buffer("anchors", self._anchors(ssd, img_size))

    @torch.no_grad()
    def _anchors(self, ssd: nn.Module, size: int) -> torch.Tensor:
        from torchvision.models.detection.image_list import ImageList

        was_training = ssd.training
        ssd.eval()
        x = torch.zeros(1, 3, size, size, device=self.mean.device)
        features = list(self.backbone((x - self.mean) / self.std).values())
        anchors = ssd.anchor_generator(ImageList(x, [(size, size)]), features)[0]
        ssd.train(was_training)
        return anchors

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from torchvision.ops import boxes as box_ops

        features = list(self.backbone((images - self.mean) / self.std).values())
        out = self.head(features)
        batch, anchors = images.shape[0], self.anchors.shape[0]
        decoded = self.box_coder.decode_single(out["bbox_regression"].reshape(-1, 4), self.anchors.repeat(batch, 1))
        boxes = box_ops.clip_boxes_to_image(decoded.reshape(batch, anchors, 4), (self.img_size, self.img_size))
        scores = torch.softmax(out["cls_logits"], dim=-1)[:, :, 1:].transpose(1, 2)  # [B, classes, anchors]
        best, where = scores.topk(min(self.topk_candidates, anchors), dim=2)
        candidates = torch.full_like(scores, -1.0).scatter(2, where, best)  # the rest can never pass the threshold
        parts = [self._image(boxes[b:b + 1], candidates[b:b + 1], b) for b in range(batch)]
        return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]

    def _image(self, boxes: torch.Tensor, scores: torch.Tensor, index: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One image's detections, best first: NMS per class, then the best ``detections_per_img``."""
        kept = class_nms(boxes, scores, self.detections_per_img, self.nms_thresh, self.score_thresh)
        cls, box = kept[:, 1], kept[:, 2]
        score = scores[0, cls, box]
        score, order = score.topk(torch.sym_min(score.shape[0], self.detections_per_img))
        box, cls = box[order], cls[order]
        return boxes[0, box], score, cls + 1, torch.full_like(cls, index)
