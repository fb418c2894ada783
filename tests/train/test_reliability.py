"""Training never loses a finished run, never reports a figure on the wrong labels, and names bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from carve.cli import main
from carve.train import TrainConfig, evaluate, fit
from carve.train.data import SafeImageFolder, build_transforms
from carve.zoo import create_model, save_weights

from .conftest import CLASSES, TINY_SPEC, copy_subset

RUN_FLAGS = ["--epochs", "1", "--batch-size", "16", "--train-per-class", "8", "--val-per-class", "4", "--workers", "0",
             "--no-progress", "--no-tensorboard", "--cutmix-alpha", "0"]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.json"
    path.write_text(json.dumps(TINY_SPEC))
    return path


@pytest.fixture(scope="module")
def finished_run(tiny_data: Path, spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch ``carve train`` run folder (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", str(spec_file), "--data", str(tiny_data), "--out-dir", str(out), *RUN_FLAGS]) == 0
    return out


def _copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def test_a_finished_run_is_not_overwritten(finished_run: Path, tiny_data: Path, spec_file: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    run = _copy_run(finished_run, tmp_path)
    before = {name: (run / name).read_bytes() for name in ("last.pt", "final.safetensors", "metrics.csv")}
    capsys.readouterr()
    rc = main(["train", str(spec_file), "--data", str(tiny_data), "--out-dir", str(run), *RUN_FLAGS, "--seed", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(run) in err and "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert {name: (run / name).read_bytes() for name in before} == before
    # asked for explicitly, the run is replaced
    rc = main(["train", str(spec_file), "--data", str(tiny_data), "--out-dir", str(run), *RUN_FLAGS, "--seed", "1",
               "--overwrite"])
    assert rc == 0 and (run / "last.pt").read_bytes() != before["last.pt"]


def test_resuming_a_finished_run_with_more_epochs_is_refused(finished_run: Path, tiny_data: Path, spec_file: Path,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _copy_run(finished_run, tmp_path)
    before = (run / "last.pt").read_bytes()
    capsys.readouterr()
    flags = list(RUN_FLAGS)
    flags[flags.index("--epochs") + 1] = "3"
    rc = main(["train", str(spec_file), "--data", str(tiny_data), "--out-dir", str(run), *flags, "--resume"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(run / "last.pt") in err and "finished" in err and "new run" in err
    assert (run / "last.pt").read_bytes() == before
    # the same schedule still resumes (nothing left to train: it re-evaluates and reports)
    assert main(["train", str(spec_file), "--data", str(tiny_data), "--out-dir", str(run), *RUN_FLAGS,
                 "--resume"]) == 0


def test_resume_into_a_different_model_names_the_checkpoint(finished_run: Path, tiny_data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    run = _copy_run(finished_run, tmp_path)
    wider = json.loads(json.dumps(TINY_SPEC))
    wider["name"] = "tiny_wider"
    wider["head"]["conv_channels"] = 96
    other = tmp_path / "wider.json"
    other.write_text(json.dumps(wider))
    capsys.readouterr()
    rc = main(["train", str(other), "--data", str(tiny_data), "--out-dir", str(run), *RUN_FLAGS, "--resume"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(run / "last.pt") in err and "different model" in err
    assert "tiny" in err and "tiny_wider" in err and "head_conv" in err  # which model, and which tensors differ


@pytest.fixture
def partial_test_split(tmp_path: Path) -> Path:
    """All four classes in train/, only frog and ship in test/."""
    root = copy_subset(tmp_path / "data", 48, 16)
    for name in ("airplane", "automobile"):
        shutil.rmtree(root / "test" / name)
    return root


def _always(class_index: int, path: Path) -> Path:
    """Weights of the tiny net that predict ``class_index`` for every image."""
    model = create_model(TINY_SPEC)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(class_index), 4).float())
    return save_weights(model, path)


def test_a_split_missing_classes_keeps_the_training_numbering(partial_test_split: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    weights = _always(CLASSES.index("ship"), tmp_path / "ship.safetensors")
    rc = main(["eval", str(weights), "--data", str(partial_test_split), "--workers", "0", "--json"])
    metrics = json.loads(capsys.readouterr().out)
    assert rc == 0 and metrics["n"] == 32
    assert metrics["top1"] == pytest.approx(50.0)  # the 16 ship images of 32, not the frogs labelled "ship"


def test_fit_reports_top1_on_the_training_class_numbering(partial_test_split: Path, spec_file: Path,
                                                          tmp_path: Path) -> None:
    cfg = TrainConfig(model=str(spec_file), data=str(partial_test_split), out_dir=str(tmp_path / "run"), epochs=2,
                      batch_size=16, lr=0.2, base_batch_size=0, workers=0, progress=False, tensorboard=False,
                      cutmix_alpha=0.0)
    result = fit(cfg)
    truth = SafeImageFolder(partial_test_split / "test", build_transforms("none", 32, False))
    right = {name: CLASSES.index(name) for name in truth.classes}  # frog 2, ship 3 as in train/
    images = torch.stack([truth[i][0] for i in range(len(truth))])
    labels = torch.tensor([right[truth.classes[t]] for _, t in truth.samples])
    with torch.no_grad():
        expected = 100.0 * (result.model.eval()(images).argmax(1) == labels).float().mean().item()
    assert result.final_top1 == pytest.approx(expected)


def test_a_split_with_unknown_classes_is_an_error_naming_them(tiny_data: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    root = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    shutil.copytree(root / "test" / "ship", root / "test" / "zebra")
    weights = _always(0, tmp_path / "w.safetensors")
    rc = main(["eval", str(weights), "--data", str(root), "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "zebra" in err and str(root / "test") in err


def test_eval_says_how_many_images_it_skipped(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    broken = sorted((root / "test" / "frog").iterdir())[:2]
    for path in broken:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated files
    with pytest.raises(OSError):
        Image.open(broken[0]).load()
    weights = _always(0, tmp_path / "w.safetensors")
    assert main(["eval", str(weights), "--data", str(root), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "(62 images, 2 skipped" in out
    assert evaluate(create_model(weights), root, img_size=32, workers=0)["skipped"] == 2


def test_an_output_path_that_is_a_file_is_refused_before_any_work(tiny_data: Path, spec_file: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "taken"
    target.write_text("not a folder")
    rc = main(["train", str(spec_file), "--data", str(tmp_path / "no-data"), "--out-dir", str(target), *RUN_FLAGS])
    err = capsys.readouterr().err
    assert rc == 2 and f"{target} is a file, not a folder" in err
    rc = main(["train", str(spec_file), "--data", str(tiny_data), "--out-dir", str(target / "run"), *RUN_FLAGS])
    assert rc == 2 and f"lies under {target}, which is a file" in capsys.readouterr().err


def test_a_bad_config_value_names_the_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"model": "mobilenet_v2_100", "epochs": "ten"}))
    assert main(["train", "--config", str(config)]) == 2
    assert f"{config}: epochs: expected an integer, got 'ten'" in capsys.readouterr().err


def test_strides_below_one_pixel_at_img_size_are_refused(tiny_data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    deep = json.loads(json.dumps(TINY_SPEC))
    deep["stem"]["stride"] = 2  # 8 px: stem 4, stage 0 2, stage 1 1 ...
    deep["stages"].append({"blocks": [{"kind": "ir", "out_channels": 32, "stride": 2, "mid_channels": 48}]})
    spec = tmp_path / "deep.json"
    spec.write_text(json.dumps(deep))
    rc = main(["train", str(spec), "--data", str(tiny_data), "--out-dir", str(tmp_path / "run"), "--img-size", "8",
               *RUN_FLAGS])
    err = capsys.readouterr().err
    assert rc == 2 and "stages[2].blocks[0].stride" in err and "img_size 8" in err and "1x1" in err
    assert not (tmp_path / "run" / "last.pt").exists()
