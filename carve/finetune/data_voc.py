"""PASCAL VOC reader: ``JPEGImages/``, ``Annotations/*.xml`` and ``ImageSets/Main/<split>.txt``.

Boxes marked ``difficult`` are kept out of training and out of the AP, as VOC's evaluation does:
they become crowd boxes, which targets leave out and COCO evaluation ignores (a detection on one
is neither a true nor a false positive). Category ids are 1..K over the class names of every
annotation file in the folder, sorted, so all splits of one dataset number classes alike.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .data_yolo import _image_size
from .dataset import AnnotationError, DetectionDataset, ImageRecord, clean_records

LAYOUT = ("JPEGImages", "Annotations")


def is_voc(root: Path) -> bool:
    return root.is_dir() and all((root / d).is_dir() for d in LAYOUT)


def _parse(file: Path) -> ET.Element:
    try:
        return ET.fromstring(file.read_bytes())
    except ET.ParseError as exc:
        raise AnnotationError(file, "top level", "xml", f"not valid XML: {exc}") from None


def _text(node: ET.Element, path: str, file: Path, entry: str) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise AnnotationError(file, entry, path, "missing")
    return found.text.strip()


def _number(node: ET.Element, path: str, file: Path, entry: str) -> float:
    text = _text(node, path, file, entry)
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(file, entry, path, f"expected a number, got {text!r}") from None


def _ids(root: Path, split: str | None) -> list[str]:
    if split is None:
        return sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        sets = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt")) if (
            root / "ImageSets" / "Main").is_dir() else []
        raise FileNotFoundError(f"{listing}: no such split (splits there: {', '.join(sets) or 'none'})")
    return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def read_voc(root: str | Path, split: str | None = None, min_box_size: float = 1.0) -> DetectionDataset:
    """Read a VOC dataset (``split``: an ``ImageSets/Main`` list such as train or val; None: every
    annotated image). Image ids are positions in the sorted list of all annotation files."""
    root = Path(root)
    every = sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
    if not every:
        raise FileNotFoundError(f"{root / 'Annotations'}: no .xml annotation files")
    trees = {}
    names = set()
    for stem in every:
        tree = _parse(root / "Annotations" / f"{stem}.xml")
        trees[stem] = tree
        names.update(_text(o, "name", root / "Annotations" / f"{stem}.xml", f"object {i}")
                     for i, o in enumerate(tree.findall("object")))
    categories = {i + 1: name for i, name in enumerate(sorted(names))}
    cat_of = {name: cid for cid, name in categories.items()}
    position = {stem: i for i, stem in enumerate(every)}
    records = []
    for stem in _ids(root, split):
        file = root / "Annotations" / f"{stem}.xml"
        if stem not in trees:
            raise FileNotFoundError(f"{file}: listed in split {split!r} but missing")
        tree = trees[stem]
        image = root / "JPEGImages" / (tree.findtext("filename") or f"{stem}.jpg").strip()
        if image.parent != root / "JPEGImages" or not image.is_file():
            image = root / "JPEGImages" / f"{stem}.jpg"
        width, height = (int(float(tree.findtext(f"size/{k}") or 0)) for k in ("width", "height"))
        if width <= 0 or height <= 0:  # some VOC exports leave the size out or at 0: read it off the image
            width, height = _image_size(image)
        rec = ImageRecord(position[stem], image, width, height)
        for i, obj in enumerate(tree.findall("object")):
            entry = f"object {i}"
            box = tuple(_number(obj, f"bndbox/{k}", file, entry) for k in ("xmin", "ymin", "xmax", "ymax"))
            rec.boxes.append(box)  # type: ignore[arg-type]
            rec.category_ids.append(cat_of[_text(obj, "name", file, entry)])
            rec.iscrowd.append(int((obj.findtext("difficult") or "0").strip() == "1"))
        records.append(rec)
    stats = clean_records(records, min_box_size)
    return DetectionDataset(records, categories, source=str(root), stats=stats)
