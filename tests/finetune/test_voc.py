"""The PASCAL VOC reader on real raccoon images: splits, difficult boxes, bad files named."""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.finetune import AnnotationError, open_dataset
from carve.finetune.evaluate import coco_metrics

from .conftest import RACCOON


def test_real_raccoon_splits_read_whole():
    if not RACCOON.is_dir():
        pytest.skip(f"raccoon not found at {RACCOON}")
    train, val = open_dataset(RACCOON, split="train"), open_dataset(RACCOON, split="val")
    every = open_dataset(RACCOON)
    assert (len(train), len(val), len(every)) == (160, 40, 200)
    assert train.categories == val.categories == {1: "raccoon"}
    assert sum(len(r.boxes) for r in every.records) == 217
    assert not {r.image_id for r in train.records} & {r.image_id for r in val.records}
    image, target = val[0]
    assert tuple(image.shape[-2:]) == (val.records[0].height, val.records[0].width)
    assert target["labels"].tolist() == [1] * len(target["boxes"])


def _edit(xml: Path, old: str, new: str) -> None:
    xml.write_text(xml.read_text().replace(old, new, 1))


def test_difficult_boxes_are_left_out_of_training_and_ignored_by_the_ap(raccoon_subset: Path):
    first = (raccoon_subset / "ImageSets" / "Main" / "val.txt").read_text().split()[0]
    xml = raccoon_subset / "Annotations" / f"{first}.xml"
    _edit(xml, "<difficult>0</difficult>", "<difficult>1</difficult>")
    val = open_dataset(raccoon_subset, split="val")
    rec = next(r for r in val.records if r.file.stem == first)
    assert rec.iscrowd[0] == 1 and val.stats.crowd == 1
    _, target = val[val.records.index(rec)]
    assert len(target["boxes"]) == len(rec.boxes) - 1
    # a detection exactly on the difficult box is neither a hit nor a miss: AP stays perfect
    gt = val.to_coco()
    dets = [dict(image_id=a["image_id"], category_id=1, bbox=a["bbox"], score=1.0) for a in gt["annotations"]]
    assert coco_metrics(gt, dets)["AP"] == pytest.approx(1.0)
    without = [d for d, a in zip(dets, gt["annotations"]) if not a["iscrowd"]]
    assert coco_metrics(gt, without)["AP"] == pytest.approx(1.0)


def test_bad_annotations_name_the_file_and_field(raccoon_subset: Path):
    first = (raccoon_subset / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    xml = raccoon_subset / "Annotations" / f"{first}.xml"
    text = xml.read_text()
    _edit(xml, "<xmin>", "<xmin>x")
    with pytest.raises(AnnotationError, match=rf"{first}\.xml: object 0: field 'bndbox/xmin': expected a number"):
        open_dataset(raccoon_subset, split="train")
    xml.write_text(text[: len(text) // 2])
    with pytest.raises(AnnotationError, match=rf"{first}\.xml: .*not valid XML"):
        open_dataset(raccoon_subset, split="train")
    xml.write_text(text)
    with pytest.raises(FileNotFoundError, match="test.txt: no such split .*train, val"):
        open_dataset(raccoon_subset, split="test")


def test_a_file_name_outside_the_image_folder_is_not_opened(raccoon_subset: Path):
    first = (raccoon_subset / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    xml = raccoon_subset / "Annotations" / f"{first}.xml"
    _edit(xml, f"<filename>{first}.jpg</filename>", "<filename>../../../etc/passwd</filename>")
    rec = next(r for r in open_dataset(raccoon_subset, split="train").records if r.file.stem == first)
    assert rec.file == raccoon_subset / "JPEGImages" / f"{first}.jpg"
