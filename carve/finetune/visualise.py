"""A PNG grid of images with true boxes (green) and predicted boxes above a score (red)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .dataset import DetectionDataset


def draw_examples(dataset: DetectionDataset, predictions: dict[int, dict[str, torch.Tensor]], path: str | Path,
                  n: int = 6, score_thresh: float = 0.3, size: int = 320, columns: int = 3) -> Path:
    """Draw the first ``n`` images of ``dataset`` that have predictions; write a PNG atomically."""
    from torchvision.transforms.v2 import functional as F
    from torchvision.utils import draw_bounding_boxes, make_grid

    names = dataset.class_names
    tiles = []
    for i, rec in enumerate(dataset.records):
        if len(tiles) >= n:
            break
        if rec.image_id not in predictions:
            continue
        img = dataset.load_image(i)
        gt = torch.tensor(rec.boxes, dtype=torch.float32).reshape(-1, 4)
        gt_labels = [f"{dataset.categories[c]}" for c in rec.category_ids]
        img = draw_bounding_boxes(img, gt, labels=gt_labels, colors="lime", width=2) if len(gt) else img
        det = predictions[rec.image_id]
        keep = det["scores"] >= score_thresh
        if keep.any():
            labels = [f"{names[int(lab) - 1]} {s:.2f}" for lab, s in zip(det["labels"][keep], det["scores"][keep])]
            img = draw_bounding_boxes(img, det["boxes"][keep], labels=labels, colors="red", width=2)
        scale = size / max(img.shape[-2:])
        img = F.resize(img, [max(1, round(img.shape[-2] * scale)), max(1, round(img.shape[-1] * scale))],
                       antialias=True)
        canvas = torch.full((3, size, size), 255, dtype=torch.uint8)
        canvas[:, : img.shape[-2], : img.shape[-1]] = img
        tiles.append(canvas)
    if not tiles:
        raise ValueError("draw_examples: no image of the dataset has predictions")
    grid = make_grid(tiles, nrow=columns, padding=4, pad_value=255)
    return _save_png(grid, Path(path))


def _save_png(image: torch.Tensor, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp)
    os.replace(tmp, path)
    return path
