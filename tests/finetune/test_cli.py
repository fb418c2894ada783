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


def test_cli_classify_with_lora_reports_what_trained(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    cifar = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"
    if not cifar.is_dir():
        pytest.skip(f"cifar10 not found at {cifar}")
    for split, src in (("train", "train"), ("val", "test")):
        for cls in ("cat", "ship"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for f in sorted((cifar / src / cls).iterdir())[:8]:
                shutil.copy(f, tmp_path / "data" / split / cls / f.name)
    rc = main(["finetune", "classify", "--backbone", "carve_075", "--data", str(tmp_path / "data"), "--peft",
               "lora:r=2", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--no-progress",
               "--no-tensorboard", "--out", str(tmp_path / "run"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peft"].startswith("lora:r=2") and 0 < out["trainable_fraction"] < 0.05
    assert out["trainable_fraction"] == pytest.approx(
        out["trainable_params"] / (out["trainable_params"] + out["frozen_params"]), abs=1e-6)
    assert Path(out["peft_weights"]).is_file() and out["weights"].endswith("final.safetensors")
