"""YOLO-format reader: ``images/<split>/*``, ``labels/<split>/*.txt`` and a class-names YAML."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from carve.files import read_text

from .dataset import AnnotationError, DetectionDataset, ImageRecord, clean_records

log = logging.getLogger("carve.finetune")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
NAMES_FILES = ("names.yaml", "data.yaml", "dataset.yaml")
FIELDS = ("class", "x_center", "y_center", "width", "height")


def read_names(file: Path) -> dict[int, str]:
    """Class names from a YAML ``names:`` list or ``{id: name}`` mapping."""
    import yaml

    try:
        data = yaml.safe_load(read_text(file))
    except yaml.YAMLError as exc:
        raise AnnotationError(file, "top level", "names", f"not valid YAML: {exc}") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        return {k: str(v) for k, v in sorted(names.items())}
    raise AnnotationError(file, "top level", "names", f"expected a list or an {{id: name}} mapping, got {names!r}")


def _folders(root: Path, split: str | None) -> tuple[Path, Path]:
    images, labels = root / "images", root / "labels"
    if split is None:
        subs = sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
        if len(subs) > 1:
            raise ValueError(f"{images}: several splits {subs}; pass split=")
        split = subs[0] if subs else ""
    images, labels = images / split, labels / split
    for folder in (images, labels):
        if not folder.is_dir():
            raise FileNotFoundError(f"YOLO dataset folder not found: {folder}")
    return images, labels


def _image_size(path: Path) -> tuple[int, int] | None:
    """The image's (width, height) from its header; None (logged) when the file cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:
        log.warning("skipped %s: cannot read image: %s", path, exc)
        return None


def read_yolo(root: str | Path, split: str | None = None, names: str | Path | None = None,
              min_box_size: float = 1.0) -> DetectionDataset:
    """Read a YOLO dataset; class ids become category ids, numeric file stems become image ids.

    An image without a label file has no objects. Boxes are clipped and degenerate ones dropped, and
    images whose file cannot be read left out (all counted in ``stats``).
    """
    root = Path(root)
    img_dir, lbl_dir = _folders(root, split)
    if names is None:
        found = [root / n for n in NAMES_FILES if (root / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{root}: no class names file (looked for {', '.join(NAMES_FILES)})")
        names = found[0]
    categories = read_names(Path(names))
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{img_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    numeric = all(p.stem.isdigit() for p in files)
    records, unreadable = [], 0
    for idx, path in enumerate(files):
        size = _image_size(path)
        if size is None:
            unreadable += 1
            continue
        rec = ImageRecord(int(path.stem) if numeric else idx, path, *size)
        label = lbl_dir / f"{path.stem}.txt"
        if label.is_file():
            _read_label(label, rec, categories)
        records.append(rec)
    stats = clean_records(records, min_box_size)
    stats.unreadable_images = unreadable
    return DetectionDataset(records, categories, source=str(root), stats=stats)


def _read_label(file: Path, rec: ImageRecord, categories: dict[int, str]) -> None:
    for n, line in enumerate(read_text(file).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        entry = f"line {n}"
        if len(parts) != 5:
            raise AnnotationError(file, entry, "row", f"expected 5 values ({' '.join(FIELDS)}), got {len(parts)}")
        try:
            cls = int(parts[0])
        except ValueError:
            raise AnnotationError(file, entry, "class", f"expected an integer class id, got {parts[0]!r}") from None
        if cls not in categories:
            raise AnnotationError(file, entry, "class", f"class id {cls} is not in the names file "
                                  f"(0-{max(categories)})")
        vals = []
        for name, text in zip(FIELDS[1:], parts[1:]):
            try:
                v = float(text)
            except ValueError:
                raise AnnotationError(file, entry, name, f"expected a number, got {text!r}") from None
            if not math.isfinite(v):
                raise AnnotationError(file, entry, name, f"expected a finite number, got {text!r}")
            vals.append(v)
        xc, yc, bw, bh = vals
        if bw < 0 or bh < 0:
            raise AnnotationError(file, entry, "width" if bw < 0 else "height", "must not be negative")
        rec.boxes.append(((xc - bw / 2) * rec.width, (yc - bh / 2) * rec.height,
                          (xc + bw / 2) * rec.width, (yc + bh / 2) * rec.height))
        rec.category_ids.append(cls)
        rec.iscrowd.append(0)
