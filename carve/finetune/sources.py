"""Which annotation format a path holds, and opening it as a ``DetectionDataset``."""

from __future__ import annotations

from pathlib import Path

from .data_coco import find_coco, read_coco
from .data_voc import is_voc, read_voc
from .data_yolo import read_yolo
from .dataset import DetectionDataset

FORMATS = ("auto", "coco", "yolo", "voc")


def open_dataset(path: str | Path, fmt: str = "auto", split: str | None = None, min_box_size: float = 1.0,
                 images: str | Path | None = None) -> DetectionDataset:
    """Open a COCO, YOLO or PASCAL VOC dataset.

    ``path``: a COCO instances JSON file (images in ``images`` or found next to it), or a dataset
    root holding ``annotations/instances_<split>.json`` + ``images/<split>/`` (COCO),
    ``images/<split>/`` + ``labels/<split>/`` + ``names.yaml`` (YOLO) or ``JPEGImages/`` +
    ``Annotations/`` (+ ``ImageSets/Main/<split>.txt``) (VOC). ``fmt``: auto, coco, yolo or voc.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path} (expected a COCO instances JSON or a dataset folder, "
                                "e.g. ../shared/data/coco128)")
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "coco" or (fmt == "auto" and (path.suffix == ".json" or (path / "annotations").is_dir())):
        ann, img_dir = find_coco(path, split, images)
        return read_coco(ann, img_dir, min_box_size=min_box_size)
    if fmt == "voc" or (fmt == "auto" and is_voc(path)):
        return read_voc(path, split, min_box_size=min_box_size)
    if fmt == "yolo" or (path / "labels").is_dir():
        return read_yolo(path, split, min_box_size=min_box_size)
    raise FileNotFoundError(f"{path}: not a COCO (annotations/*.json), YOLO (labels/) or VOC (JPEGImages/ and "
                            "Annotations/) dataset")
