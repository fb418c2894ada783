"""COCO-format reader: an instances JSON (images, annotations, categories) and an image folder."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from carve.files import read_text

from .dataset import AnnotationError, DetectionDataset, ImageRecord, clean_records


def find_coco(path: Path, split: str | None = None, images: str | Path | None = None) -> tuple[Path, Path]:
    """Locate (annotation JSON, image folder) from a JSON file or a dataset root."""
    if path.suffix == ".json":
        ann = path
        candidates = [path.parent / "images", path.parent.parent / "images"]
        stem = path.stem.removeprefix("instances_")
        candidates = [c / stem for c in candidates] + candidates + [path.parent]
    else:
        files = sorted((path / "annotations").glob("instances_*.json"))
        if split is not None:
            files = [f for f in files if f.stem == f"instances_{split}"]
        if not files:
            want = f"instances_{split}.json" if split else "instances_*.json"
            raise FileNotFoundError(f"{path / 'annotations'}: no {want}")
        if len(files) > 1:
            raise ValueError(f"{path / 'annotations'}: several instance files {[f.name for f in files]}; pass split=")
        ann = files[0]
        stem = ann.stem.removeprefix("instances_")
        candidates = [path / "images" / stem, path / stem, path / "images"]
    if images is not None:
        return ann, Path(images)
    for c in candidates:
        if c.is_dir():
            return ann, c
    raise FileNotFoundError(f"{ann}: no image folder found (looked in {[str(c) for c in candidates]}); pass images=")


def _number(value: Any, file: Path, entry: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnnotationError(file, entry, name, f"expected a finite number, got {value!r}")
    return float(value)


def _int(value: Any, file: Path, entry: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnnotationError(file, entry, name, f"expected an integer, got {value!r}")
    return value


def _field(obj: dict, key: str, file: Path, entry: str) -> Any:
    if key not in obj:
        raise AnnotationError(file, entry, key, "missing required field")
    return obj[key]


def _list(data: dict, key: str, file: Path) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise AnnotationError(file, "top level", key, f"expected a list, got {type(value).__name__}")
    return value


def read_coco(annotation_file: str | Path, image_dir: str | Path, min_box_size: float = 1.0) -> DetectionDataset:
    """Read a COCO instances file; boxes are clipped and degenerate ones dropped (counted in ``stats``)."""
    file, image_dir = Path(annotation_file), Path(image_dir)
    if not file.is_file():
        raise FileNotFoundError(f"annotation file not found: {file}")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    try:
        data = json.loads(read_text(file))
    except json.JSONDecodeError as exc:
        raise AnnotationError(file, f"line {exc.lineno}", "json", f"not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise AnnotationError(file, "top level", "json", f"expected an object, got {type(data).__name__}")

    categories: dict[int, str] = {}
    for i, cat in enumerate(_list(data, "categories", file)):
        entry = f"categories[{i}]"
        if not isinstance(cat, dict):
            raise AnnotationError(file, entry, "category", f"expected an object, got {cat!r}")
        cid = _int(_field(cat, "id", file, entry), file, entry, "id")
        categories[cid] = str(cat.get("name", cid))

    records: dict[int, ImageRecord] = {}
    for i, img in enumerate(_list(data, "images", file)):
        entry = f"images[{i}]"
        if not isinstance(img, dict):
            raise AnnotationError(file, entry, "image", f"expected an object, got {img!r}")
        iid = _int(_field(img, "id", file, entry), file, entry, "id")
        entry = f"images[{i}] (id {iid})"
        name = _field(img, "file_name", file, entry)
        if not isinstance(name, str) or not name:
            raise AnnotationError(file, entry, "file_name", f"expected a file name, got {name!r}")
        w = _int(_field(img, "width", file, entry), file, entry, "width")
        h = _int(_field(img, "height", file, entry), file, entry, "height")
        if w <= 0 or h <= 0:
            raise AnnotationError(file, entry, "width" if w <= 0 else "height", f"must be positive, got {w}x{h}")
        if iid in records:
            raise AnnotationError(file, entry, "id", f"duplicate image id {iid}")
        inside = os.path.normpath(name)
        if os.path.isabs(name) or inside == os.pardir or inside.startswith(os.pardir + os.sep):
            raise AnnotationError(file, entry, "file_name", f"must be a path inside the image folder {image_dir}, "
                                                            f"got {name!r}")
        path = image_dir / inside
        if not path.is_file():
            raise AnnotationError(file, entry, "file_name", f"image file not found: {path}")
        records[iid] = ImageRecord(iid, path, w, h)

    for i, ann in enumerate(_list(data, "annotations", file)):
        entry = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise AnnotationError(file, entry, "annotation", f"expected an object, got {ann!r}")
        if "id" in ann:
            entry = f"annotations[{i}] (id {ann['id']})"
        iid = _int(_field(ann, "image_id", file, entry), file, entry, "image_id")
        if iid not in records:
            raise AnnotationError(file, entry, "image_id", f"no image with id {iid}")
        cid = _int(_field(ann, "category_id", file, entry), file, entry, "category_id")
        if cid not in categories:
            raise AnnotationError(file, entry, "category_id", f"no category with id {cid}")
        bbox = _field(ann, "bbox", file, entry)
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(file, entry, "bbox", f"expected [x, y, width, height], got {bbox!r}")
        x, y, bw, bh = (_number(v, file, entry, "bbox") for v in bbox)
        if bw < 0 or bh < 0:
            raise AnnotationError(file, entry, "bbox", f"negative width or height in {bbox!r}")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise AnnotationError(file, entry, "iscrowd", f"expected 0 or 1, got {crowd!r}")
        rec = records[iid]
        rec.boxes.append((x, y, x + bw, y + bh))
        rec.category_ids.append(cid)
        rec.iscrowd.append(int(crowd))

    recs = [records[i] for i in sorted(records)]
    stats = clean_records(recs, min_box_size)
    return DetectionDataset(recs, categories, source=str(file), stats=stats)
