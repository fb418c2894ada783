"""COCO box mAP with pycocotools: predictions, a COCO results JSON, AP/AP50/AP75/S/M/L and per class."""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from carve.files import write_json
from carve.train.data import SkipCounter

from .dataset import DetectionDataset, collate

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100",
              "AR_small", "AR_medium", "AR_large")


@torch.no_grad()
def predict(model: nn.Module, dataset: DetectionDataset, batch_size: int = 4, workers: int = 0,
            progress: bool = False, skips: SkipCounter | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """Run the detector in eval mode over ``dataset``; boxes are in original image pixels (XYXY).
    Images that cannot be decoded get no entry (and are added to ``skips``)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from .transforms import eval_transforms

    was_training = model.training
    model.eval()
    loader = DataLoader(dataset.with_transforms(eval_transforms()), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=collate)
    out: dict[int, dict[str, torch.Tensor]] = {}
    for images, targets, skipped in tqdm(loader, desc="predict", disable=not progress, leave=False):
        if skips is not None:
            skips.add(skipped)
        if not images:
            continue
        for det, tgt in zip(model([im.as_subclass(torch.Tensor) for im in images]), targets):
            out[int(tgt["image_id"])] = {k: v.detach().cpu() for k, v in det.items()}
    model.train(was_training)
    return out


def to_coco_results(predictions: dict[int, dict[str, torch.Tensor]], dataset: DetectionDataset) -> list[dict]:
    """Detections as a COCO results list (original category ids, ``[x, y, w, h]`` boxes)."""
    results = []
    for image_id, det in predictions.items():
        for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            x1, y1, x2, y2 = box
            results.append(dict(image_id=image_id, category_id=dataset.cat_ids[label - 1],
                                bbox=[round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                score=round(score, 5)))
    return results


def coco_metrics(ground_truth: dict[str, Any], results: list[dict]) -> dict[str, Any]:
    """COCO box metrics from a ground-truth instances dict and a results list.

    Returns the twelve standard numbers (AP, AP50, AP75, AP_small, ... as fractions in [0, 1];
    None where no ground truth falls in that bucket) and ``per_class`` AP by category name for
    the categories present in the ground truth.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    present = sorted({a["category_id"] for a in ground_truth["annotations"] if not a.get("iscrowd", 0)})
    empty = dict.fromkeys(STAT_NAMES, 0.0) | dict(per_class={names[c]: 0.0 for c in present}, num_detections=0)
    if not results or not present:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(ground_truth))
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics: dict[str, Any] = {n: (None if v < 0 else float(v)) for n, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # [iou thresholds, recall points, classes, areas, max dets]
    per_class = {}
    for k, cid in enumerate(ev.params.catIds):
        if cid not in present:
            continue
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[names[cid]] = float(p.mean()) if p.size else 0.0
    metrics["per_class"] = per_class
    metrics["num_detections"] = len(results)
    return metrics


PRIOR_BOXES = ((0.9, 1.0), (0.7, 0.9), (0.5, 0.8))  # (fraction of the image's width and height, score)


def box_prior(ground_truth: dict[str, Any]) -> dict[str, float]:
    """AP and AP50 of a detector that sees no image: three centred boxes per image (90, 70 and 50 %
    of its sides) of the ground truth's most frequent category. A finetune that does not beat it
    learned where objects usually are, not what they look like."""
    counts = Counter(a["category_id"] for a in ground_truth["annotations"] if not a.get("iscrowd", 0))
    if not counts:
        return dict(AP=0.0, AP50=0.0)
    category = counts.most_common(1)[0][0]
    results = [dict(image_id=im["id"], category_id=category, score=score,
                    bbox=[im["width"] * (1 - f) / 2, im["height"] * (1 - f) / 2, im["width"] * f, im["height"] * f])
               for im in ground_truth["images"] for f, score in PRIOR_BOXES]
    metrics = coco_metrics(ground_truth, results)
    return dict(AP=metrics["AP"], AP50=metrics["AP50"])


def evaluate_detector(model: nn.Module, dataset: DetectionDataset, batch_size: int = 4, out_dir: str | Path | None = None,
                      workers: int = 0, progress: bool = False,
                      skips: SkipCounter | None = None) -> tuple[dict[str, Any], dict[int, dict]]:
    """Predict over ``dataset`` and score with COCO mAP; with ``out_dir``, writes
    ``detections.json`` (COCO results) and ``metrics.json``. Returns (metrics, predictions).

    Images that cannot be decoded are left out of the ground truth too, and counted in
    ``metrics["skipped_images"]`` (and in ``skips`` when given). ``metrics["prior"]`` is
    :func:`box_prior` on the same images."""
    predictions = predict(model, dataset, batch_size, workers, progress, skips)
    results = to_coco_results(predictions, dataset)
    ground_truth = dataset.to_coco()
    if len(predictions) < len(dataset):
        ground_truth["images"] = [i for i in ground_truth["images"] if i["id"] in predictions]
        ground_truth["annotations"] = [a for a in ground_truth["annotations"] if a["image_id"] in predictions]
    metrics = coco_metrics(ground_truth, results)
    metrics["skipped_images"] = len(dataset) - len(predictions)
    metrics["prior"] = box_prior(ground_truth)
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(out_dir / "detections.json", results)
        write_json(out_dir / "metrics.json", metrics)
    return metrics, predictions


def format_metrics(metrics: dict[str, Any], per_class: int = 0) -> str:
    """A short text summary (percent), optionally with the best and worst classes."""
    pct = lambda v: "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:5.1f}"  # noqa: E731
    line = "  ".join(f"{n} {pct(metrics.get(n))}" for n in STAT_NAMES[:6])
    if per_class and metrics.get("per_class"):
        ranked = sorted(metrics["per_class"].items(), key=lambda kv: -kv[1])
        line += "\n  best:  " + ", ".join(f"{k} {pct(v)}" for k, v in ranked[:per_class])
        line += "\n  worst: " + ", ".join(f"{k} {pct(v)}" for k, v in ranked[-per_class:])
    return line
