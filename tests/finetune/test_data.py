import json
from pathlib import Path

import pytest
import torch

from carve.finetune.data_coco import read_coco
from carve.finetune.data_yolo import read_yolo
from carve.finetune import AnnotationError, open_dataset
from carve.finetune.transforms import train_transforms

from .conftest import SUBSET_IDS


def test_coco_and_yolo_agree_on_the_same_images(coco_subset: Path) -> None:
    coco = open_dataset(coco_subset, "coco")
    yolo = open_dataset(coco_subset, "yolo")
    assert [r.image_id for r in coco.records] == SUBSET_IDS == [r.image_id for r in yolo.records]
    assert coco.num_classes == yolo.num_classes == 80
    for a, b in zip(coco.records, yolo.records):
        assert (a.width, a.height) == (b.width, b.height)
        # YOLO files carry no crowd boxes; compare the ordinary ones, class by class name
        ca = sorted((coco.categories[c], *map(round, box)) for c, box, k in zip(a.category_ids, a.boxes, a.iscrowd) if not k)
        cb = sorted((yolo.categories[c], *map(round, box)) for c, box in zip(b.category_ids, b.boxes))
        assert [x[0] for x in ca] == [x[0] for x in cb]
        assert all(abs(p - q) <= 1 for x, y in zip(ca, cb) for p, q in zip(x[1:], y[1:]))
    assert coco.stats.crowd == 1 and coco.stats.images_without_objects == 1


def test_items_are_detection_targets_and_empty_images_work(coco_subset: Path) -> None:
    ds = open_dataset(coco_subset)
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    assert target["boxes"].shape == (8, 4) and target["labels"].min() >= 1
    empty = ds.subset([250]).with_transforms(train_transforms("ssdlite", 96))
    for _ in range(3):
        image, target = empty[0]
        assert image.shape == (3, 96, 96) and target["boxes"].shape == (0, 4)
    crowd = ds.subset([257])
    rec = crowd.records[0]
    assert crowd[0][1]["boxes"].shape[0] == len(rec.boxes) - sum(rec.iscrowd)
    gt = crowd.to_coco()
    assert sum(a["iscrowd"] for a in gt["annotations"]) == 1


def test_split_is_by_image_id_and_deterministic(coco_subset: Path) -> None:
    ds = open_dataset(coco_subset)
    tr, va = ds.split(0.3, seed=1)
    tr2, va2 = ds.split(0.3, seed=1)
    ids = lambda d: [r.image_id for r in d.records]  # noqa: E731
    assert ids(va) == ids(va2) and ids(tr) == ids(tr2)
    assert sorted(ids(tr) + ids(va)) == SUBSET_IDS and len(va) == 2


def test_outside_boxes_are_clipped_and_degenerate_dropped(coco_copy: Path) -> None:
    ann = coco_copy / "annotations" / "instances_train2017.json"
    data = json.loads(ann.read_text())
    img = data["images"][0]
    base = dict(image_id=img["id"], category_id=1, iscrowd=0)
    data["annotations"] += [dict(base, id=90001, bbox=[-20, -10, 100, 50]),          # clipped
                            dict(base, id=90002, bbox=[img["width"] + 5, 10, 30, 30]),  # fully outside
                            dict(base, id=90003, bbox=[10, 10, 0, 20])]                # zero width
    ann.write_text(json.dumps(data))
    before = read_coco(ann, coco_copy / "images" / "train2017")
    assert before.stats.dropped_degenerate == 2 and before.stats.clipped == 2
    rec = before.records[[r.image_id for r in before.records].index(img["id"])]
    assert (0.0, 0.0, 80.0, 40.0) in rec.boxes
    for box in (b for r in before.records for b in r.boxes):
        assert box[0] >= 0 and box[1] >= 0 and box[2] > box[0] and box[3] > box[1]


@pytest.mark.parametrize("mutate, entry, field", [
    (lambda d: d["annotations"][3].update(bbox=[1, 2, 3]), "annotations[3]", "bbox"),
    (lambda d: d["annotations"][2].update(category_id=999), "annotations[2]", "category_id"),
    (lambda d: d["annotations"][0].pop("image_id"), "annotations[0]", "image_id"),
    (lambda d: d["images"][1].update(width="wide"), "images[1]", "width"),
    (lambda d: d["annotations"][4]["bbox"].__setitem__(0, "x"), "annotations[4]", "bbox"),
])
def test_malformed_coco_names_file_entry_and_field(coco_copy: Path, mutate, entry: str, field: str) -> None:
    ann = coco_copy / "annotations" / "instances_train2017.json"
    data = json.loads(ann.read_text())
    mutate(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as info:
        read_coco(ann, coco_copy / "images" / "train2017")
    msg = str(info.value)
    assert str(ann) in msg and entry in msg and repr(field) in msg


def test_broken_json_and_missing_dataset(coco_copy: Path) -> None:
    ann = coco_copy / "annotations" / "instances_train2017.json"
    ann.write_text('{"images": [')
    with pytest.raises(AnnotationError, match="not valid JSON"):
        read_coco(ann, coco_copy / "images" / "train2017")
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        open_dataset(coco_copy / "nope")


@pytest.mark.parametrize("line, field", [("3 0.5 0.5 0.2", "row"), ("x 0.5 0.5 0.2 0.2", "class"),
                                         ("3 0.5 abc 0.2 0.2", "y_center"), ("500 0.5 0.5 0.2 0.2", "class"),
                                         ("3 0.5 0.5 -0.2 0.2", "width")])
def test_malformed_yolo_names_file_line_and_field(coco_copy: Path, line: str, field: str) -> None:
    label = coco_copy / "labels" / "train2017" / "000000000025.txt"
    label.write_text(label.read_text() + line + "\n")
    n = len(label.read_text().splitlines())
    with pytest.raises(AnnotationError) as info:
        read_yolo(coco_copy)
    msg = str(info.value)
    assert str(label) in msg and f"line {n}" in msg and repr(field) in msg


def test_yolo_boxes_outside_are_clipped(coco_copy: Path) -> None:
    label = coco_copy / "labels" / "train2017" / "000000000025.txt"
    label.write_text("0 0.95 0.5 0.3 0.2\n0 1.5 0.5 0.2 0.2\n")
    ds = read_yolo(coco_copy)
    rec = ds.records[[r.image_id for r in ds.records].index(25)]
    assert len(rec.boxes) == 1 and rec.boxes[0][2] == rec.width
    assert ds.stats.dropped_degenerate == 1
