import json
from pathlib import Path

import pytest

from carve.cli import main


def test_cli_detect_then_eval(coco_subset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    rc = main(["finetune", "detect", "--backbone", "mobilenet_v3_small_075", "--head", "ssdlite", "--data",
               str(coco_subset), "--format", "yolo", "--img-size", "64", "--epochs", "1", "--batch-size", "4",
               "--val-fraction", "0.3", "--out", str(out), "--no-progress", "--json"])
    assert rc == 0
    trained = json.loads(capsys.readouterr().out)
    assert 0 <= trained["AP"] <= 1 and Path(trained["checkpoint"]).is_file()
    rc = main(["finetune", "eval", str(out / "last.pt"), "--examples", "1", "--json"])
    assert rc == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["images"] == 2  # the run's own validation split (30% of 7 images)
    assert evaluated["AP"] == pytest.approx(trained["AP"])
    assert Path(evaluated["files"]["examples_png"]).is_file()


def test_cli_reports_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["finetune", "detect", "--backbone", "carve_075", "--data", str(tmp_path / "none"), "--out",
               str(tmp_path / "o")])
    assert rc == 2 and "dataset not found" in capsys.readouterr().err
