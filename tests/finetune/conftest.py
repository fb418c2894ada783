"""A small copy of coco128 (both formats) for the finetune tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

COCO128 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "coco128"
# 250 has no objects, 257 holds a crowd annotation; the others are ordinary images.
SUBSET_IDS = [9, 25, 30, 34, 36, 250, 257]


def _copy_subset(dst: Path, ids: list[int]) -> Path:
    if not COCO128.is_dir():
        pytest.skip(f"coco128 not found at {COCO128}")
    data = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    keep = set(ids)
    data["images"] = [i for i in data["images"] if i["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    for sub in ("annotations", "images/train2017", "labels/train2017"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    (dst / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    for img in data["images"]:
        name = img["file_name"]
        shutil.copy(COCO128 / "images" / "train2017" / name, dst / "images" / "train2017" / name)
        label = COCO128 / "labels" / "train2017" / (Path(name).stem + ".txt")
        if label.is_file():
            shutil.copy(label, dst / "labels" / "train2017" / label.name)
    shutil.copy(COCO128 / "names.yaml", dst / "names.yaml")
    return dst


@pytest.fixture(scope="session")
def coco_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only: seven coco128 images with COCO JSON, YOLO labels and names.yaml."""
    return _copy_subset(tmp_path_factory.mktemp("coco_subset"), SUBSET_IDS)


@pytest.fixture
def coco_copy(tmp_path: Path) -> Path:
    """A private, writable copy for malformed variants."""
    return _copy_subset(tmp_path / "data", SUBSET_IDS)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


RACCOON = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "raccoon"


def copy_raccoon(dst: Path, train: int = 6, val: int = 3) -> Path:
    """The first ``train`` and ``val`` images of raccoon's own splits, in the VOC layout."""
    if not RACCOON.is_dir():
        pytest.skip(f"raccoon not found at {RACCOON}")
    (dst / "ImageSets" / "Main").mkdir(parents=True)
    for d in ("JPEGImages", "Annotations"):
        (dst / d).mkdir()
    for split, n in (("train", train), ("val", val)):
        ids = (RACCOON / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
        (dst / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i in ids:
            shutil.copy(RACCOON / "JPEGImages" / f"{i}.jpg", dst / "JPEGImages" / f"{i}.jpg")
            shutil.copy(RACCOON / "Annotations" / f"{i}.xml", dst / "Annotations" / f"{i}.xml")
    return dst


@pytest.fixture
def raccoon_subset(tmp_path: Path) -> Path:
    """A writable copy of 6 training and 3 validation raccoon images (VOC layout)."""
    return copy_raccoon(tmp_path / "raccoon")


DETECTOR_SIZE = 96  # the tiny detector checkpoints' input size


@pytest.fixture(scope="module")
def raccoon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 6 validation raccoon images."""
    return copy_raccoon(tmp_path_factory.mktemp("raccoon") / "data", train=8, val=6)


@pytest.fixture(scope="module")
def checkpoint(raccoon: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SSDLite trained for 6 steps on the raccoon images."""
    from carve.finetune import DetectConfig, detect

    torch.set_num_threads(1)
    return detect(DetectConfig(backbone="mobilenet_v3_small_075", data=str(raccoon), split="train", val_split="val",
                               out_dir=str(tmp_path_factory.mktemp("run")), img_size=DETECTOR_SIZE, batch_size=4,
                               lr=0.05, warmup_epochs=0, augment="flip", progress=False, tensorboard=False, examples=0,
                               epochs=3)).checkpoint
