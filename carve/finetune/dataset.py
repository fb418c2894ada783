"""The detection dataset both readers produce: per-image records, cleaning, splits, COCO export."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file, the entry and the field."""

    def __init__(self, file: str | Path, entry: str, field_name: str, message: str):
        self.file, self.entry, self.field = str(file), entry, field_name
        super().__init__(f"{file}: {entry}: field {field_name!r}: {message}")


@dataclass
class ImageRecord:
    """One image and its boxes (x1, y1, x2, y2 in pixels), with original category ids."""

    image_id: int
    file: Path
    width: int
    height: int
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)
    iscrowd: list[int] = field(default_factory=list)


class UnreadableImage(RuntimeError):
    """An image file that cannot be decoded (truncated, corrupt); the message names it."""


@dataclass
class CleanStats:
    """What cleaning did: boxes clipped to the image, degenerate boxes dropped, crowd boxes seen,
    images left out on reading because their file could not be read."""

    clipped: int = 0
    dropped_degenerate: int = 0
    crowd: int = 0
    images_without_objects: int = 0
    unreadable_images: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(clipped=self.clipped, dropped_degenerate=self.dropped_degenerate, crowd=self.crowd,
                    images_without_objects=self.images_without_objects, unreadable_images=self.unreadable_images)


def clean_records(records: list[ImageRecord], min_size: float = 1.0) -> CleanStats:
    """Clip boxes to their image and drop those narrower or lower than ``min_size`` px (in place)."""
    stats = CleanStats()
    for rec in records:
        keep_boxes, keep_cats, keep_crowd = [], [], []
        for box, cat, crowd in zip(rec.boxes, rec.category_ids, rec.iscrowd):
            x1, y1, x2, y2 = box
            c = (min(max(x1, 0.0), rec.width), min(max(y1, 0.0), rec.height),
                 min(max(x2, 0.0), rec.width), min(max(y2, 0.0), rec.height))
            if c != tuple(box):
                stats.clipped += 1
            if c[2] - c[0] < min_size or c[3] - c[1] < min_size:
                stats.dropped_degenerate += 1
                continue
            keep_boxes.append(c)
            keep_cats.append(cat)
            keep_crowd.append(crowd)
            stats.crowd += int(crowd)
        rec.boxes, rec.category_ids, rec.iscrowd = keep_boxes, keep_cats, keep_crowd
        stats.images_without_objects += int(not any(c == 0 for c in keep_crowd))
    return stats


class DetectionDataset(Dataset):
    """Images with boxes for torchvision detection models.

    Items are ``(image, target)``: a uint8 ``tv_tensors.Image`` and a dict with ``boxes``
    (``tv_tensors.BoundingBoxes``, XYXY), ``labels`` (contiguous 1..K, 0 is background) and
    ``image_id``; an image that cannot be decoded is ``(None, {"image_id", "file"})``, which
    ``collate`` leaves out and reports. Crowd boxes are left out of targets (``include_crowd=False``)
    but stay in :meth:`to_coco` so COCO evaluation ignores detections on them.
    """

    def __init__(self, records: list[ImageRecord], categories: dict[int, str], source: str = "",
                 transforms: Callable | None = None, stats: CleanStats | None = None,
                 include_crowd: bool = False):
        self.records = records
        self.categories = dict(sorted(categories.items()))
        self.cat_ids = list(self.categories)
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.cat_ids)}
        self.source = source
        self.transforms = transforms
        self.stats = stats or CleanStats()
        self.include_crowd = include_crowd

    @property
    def num_classes(self) -> int:
        """Number of object classes (without background)."""
        return len(self.cat_ids)

    @property
    def class_names(self) -> list[str]:
        return [self.categories[c] for c in self.cat_ids]

    def __len__(self) -> int:
        return len(self.records)

    def load_image(self, index: int) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms.v2.functional import pil_to_tensor

        rec = self.records[index]
        try:
            with Image.open(rec.file) as im:
                return pil_to_tensor(im.convert("RGB"))
        except Exception as exc:
            raise UnreadableImage(f"{rec.file}: cannot decode image (image id {rec.image_id}): {exc}") from exc

    def target(self, index: int, size: tuple[int, int]) -> dict[str, Any]:
        from torchvision import tv_tensors

        rec = self.records[index]
        keep = [i for i, c in enumerate(rec.iscrowd) if self.include_crowd or not c]
        boxes = torch.tensor([rec.boxes[i] for i in keep], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self.label_of[rec.category_ids[i]] for i in keep], dtype=torch.int64)
        return dict(boxes=tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size), labels=labels,
                    image_id=rec.image_id)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        from torchvision import tv_tensors

        rec = self.records[index]
        try:
            img = self.load_image(index)
        except UnreadableImage:
            return None, dict(image_id=rec.image_id, file=str(rec.file))
        if tuple(img.shape[-2:]) != (rec.height, rec.width):
            raise RuntimeError(f"{rec.file}: image is {img.shape[-1]}x{img.shape[-2]} but the annotations "
                               f"say {rec.width}x{rec.height} (image id {rec.image_id})")
        image, target = tv_tensors.Image(img), self.target(index, (rec.height, rec.width))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    # -- views -----------------------------------------------------------------------------------
    def with_transforms(self, transforms: Callable | None) -> DetectionDataset:
        return self._copy(self.records, transforms)

    def subset(self, image_ids: list[int]) -> DetectionDataset:
        """The images with these ids, in the given order."""
        by_id = {r.image_id: r for r in self.records}
        missing = [i for i in image_ids if i not in by_id]
        if missing:
            raise KeyError(f"image ids not in {self.source or 'the dataset'}: {missing[:5]}")
        return self._copy([by_id[i] for i in image_ids], self.transforms)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[DetectionDataset, DetectionDataset]:
        """Deterministic train/val split by image id (sorted ids shuffled with ``seed``)."""
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
        ids = sorted(r.image_id for r in self.records)
        random.Random(seed).shuffle(ids)
        n_val = max(1, round(len(ids) * val_fraction))
        return self.subset(sorted(ids[n_val:])), self.subset(sorted(ids[:n_val]))

    def _copy(self, records: list[ImageRecord], transforms: Callable | None) -> DetectionDataset:
        return DetectionDataset(records, self.categories, self.source, transforms, self.stats, self.include_crowd)

    def to_coco(self) -> dict[str, Any]:
        """Ground truth as a COCO instances dict (original ids and sizes, crowd boxes included)."""
        images, anns = [], []
        for rec in self.records:
            images.append(dict(id=rec.image_id, file_name=rec.file.name, width=rec.width, height=rec.height))
            for (x1, y1, x2, y2), cat, crowd in zip(rec.boxes, rec.category_ids, rec.iscrowd):
                anns.append(dict(id=len(anns) + 1, image_id=rec.image_id, category_id=cat, iscrowd=int(crowd),
                                 bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1)))
        cats = [dict(id=c, name=n) for c, n in self.categories.items()]
        return dict(images=images, annotations=anns, categories=cats)


def collate(batch: list[tuple[Any, Any]]) -> tuple[list[Any], list[Any], list[str]]:
    """Detection batches are lists (images differ in size): (images, targets, files of the images
    left out because they could not be decoded)."""
    good = [(image, target) for image, target in batch if image is not None]
    skipped = [target["file"] for image, target in batch if image is None]
    return [image for image, _ in good], [target for _, target in good], skipped
