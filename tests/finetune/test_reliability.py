"""Detection finetuning never overwrites a run, skips and counts undecodable images, names bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from carve.cli import main
from carve.finetune.data_coco import read_coco
from carve.finetune.data_yolo import read_yolo
from carve.finetune.dataset import AnnotationError

FLAGS = ["--backbone", "mobilenet_v3_small_075", "--head", "ssdlite", "--img-size", "64", "--epochs", "1",
         "--batch-size", "2", "--examples", "0", "--no-progress", "--no-tensorboard", "--warmup-epochs", "0"]


def _detect(data: Path, out: Path, *extra: str) -> int:
    return main(["finetune", "detect", "--data", str(data), "--out", str(out), *FLAGS, *extra])


def test_a_finished_detection_run_is_not_overwritten(coco_subset: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    ids = ["--train-ids", "9", "25", "--val-ids", "30"]
    assert _detect(coco_subset, out, *ids, "--format", "coco") == 0
    before = (out / "last.pt").read_bytes()
    capsys.readouterr()
    assert _detect(coco_subset, out, *ids, "--format", "coco", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert str(out) in err and "already holds a run" in err and "--resume" in err
    assert (out / "last.pt").read_bytes() == before


def test_a_truncated_image_is_skipped_and_counted(coco_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    image = coco_copy / "images" / "train2017" / "000000000030.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 3])
    capsys.readouterr()
    rc = _detect(coco_copy, tmp_path / "run", "--format", "coco", "--train-ids", "9", "25", "30", "34",
                 "--val-ids", "30", "36", "--json")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads(captured.out)
    assert result["skipped_images"] == 1  # one file, skipped in training and in evaluation
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_images"] == 1
    assert {d["image_id"] for d in json.loads((tmp_path / "run" / "detections.json").read_text())} <= {36}
    assert "000000000030.jpg" in caplog.text  # named in the log


def test_an_unreadable_yolo_image_is_left_out_and_counted(coco_copy: Path) -> None:
    (coco_copy / "images" / "train2017" / "000000000030.jpg").write_bytes(b"not a jpeg at all")
    dataset = read_yolo(coco_copy)
    assert len(dataset) == 6 and 30 not in {r.image_id for r in dataset.records}
    assert dataset.stats.unreadable_images == 1


def test_annotation_files_that_are_not_utf8_are_named(coco_copy: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    coco = coco_copy / "annotations" / "instances_train2017.json"
    text = coco.read_text()
    coco.write_bytes(text.replace('"person"', '"pers\u00f6n"').encode("latin-1"))
    assert _detect(coco_copy, tmp_path / "a", "--format", "coco") == 2
    assert f"{coco}: not UTF-8 text (byte 0xf6" in capsys.readouterr().err
    label = coco_copy / "labels" / "train2017" / "000000000009.txt"
    label.write_bytes(label.read_bytes() + b"\xff\n")
    assert _detect(coco_copy, tmp_path / "b", "--format", "yolo") == 2
    assert f"{label}: not UTF-8 text (byte 0xff" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../outside.jpg", "ABSOLUTE", "sub/../../outside.jpg"])
def test_a_coco_file_name_outside_the_image_folder_is_refused(coco_copy: Path, name: str) -> None:
    images = coco_copy / "images" / "train2017"
    outside = coco_copy / "images" / "outside.jpg"
    shutil.copy(images / "000000000009.jpg", outside)
    coco = coco_copy / "annotations" / "instances_train2017.json"
    data = json.loads(coco.read_text())
    data["images"][0]["file_name"] = str(outside) if name == "ABSOLUTE" else name
    coco.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"images\[0\] .*'file_name': must be a path inside the image folder"):
        read_coco(coco, images)
    data["images"][0]["file_name"] = "sub/../000000000009.jpg"  # inside after all: accepted
    coco.write_text(json.dumps(data))
    assert read_coco(coco, images).records[0].file == images / "000000000009.jpg"
