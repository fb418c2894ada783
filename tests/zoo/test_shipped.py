"""Weights that ship with carve: published with a manifest, loaded offline, checked against it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from carve.zoo import WeightsError, create_model, get_entry, list_models
from carve.zoo.shipped import manifest, publish, record, shipped_file, trained_input_size, weights_dir
from carve.zoo.supernet import SHIPPED_NAME, extract, load_supernet

TINY_IMAGENET = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tiny-imagenet"
TAG = "carve:tiny-imagenet"


@pytest.fixture
def weights(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CARVE_WEIGHTS_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = create_model("carve_075", num_classes=202)
    publish(model, "carve_075", TAG, dict(dataset="tiny-imagenet-202", top1=12.5, top5=30.0,
                                          eval=dict(input_size=64, crop_pct=1.0)))
    return tmp_path


def test_published_weights_load_offline_and_exactly(weights: Path):
    rec = manifest()[TAG]["carve_075"]
    assert rec["sha256"] and rec["spec_hash"] == create_model("carve_075", num_classes=202).spec.hash()
    assert TAG in get_entry("carve_075").weights_tags() and "carve_075" in list_models(pretrained=True)
    model = create_model("carve_075", pretrained=TAG)
    assert model.num_classes == 202 and model.pretrained_cfg["input_size"] == (3, 64, 64)
    assert model.pretrained_cfg["top1"] == 12.5 and model.pretrained_cfg["dataset"] == "tiny-imagenet-202"
    torch.manual_seed(0)
    fp16 = create_model("carve_075", num_classes=202).half().float()
    for k, v in fp16.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_a_damaged_or_missing_file_is_named(weights: Path):
    path = weights / manifest()[TAG]["carve_075"]["file"]
    path.write_bytes(path.read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(WeightsError, match="sha256 differs"):
        create_model("carve_075", pretrained=TAG)
    path.unlink()
    with pytest.raises(WeightsError, match="missing"):
        shipped_file(TAG, "carve_075")
    with pytest.raises(WeightsError, match="no shipped weights"):
        shipped_file(TAG, "carve_100")


def _shipped() -> list[tuple[str, str]]:
    return [(tag, name) for tag, models in manifest(weights_dir()).items() for name in models]


@pytest.mark.parametrize("tag, name", _shipped())
def test_every_shipped_file_reproduces_its_manifest_top1(tag: str, name: str, monkeypatch):
    """The shipped file's top-1 on the first 500 held-out images, as the manifest records it."""
    from torch.utils.data import DataLoader

    from carve.train import build_transforms, collate_skipping, evaluate
    from carve.train.shards import ShardDataset

    if not TINY_IMAGENET.is_dir():
        pytest.skip(f"Tiny ImageNet shards not found at {TINY_IMAGENET}")
    rec = manifest(weights_dir())[tag][name]
    torch.set_num_threads(1)
    if name == SHIPPED_NAME:  # the supernet: its largest sub-network, BatchNorm re-estimated as the record says
        from carve.train import calibration_loader
        from carve.train.batchnorm import recalibrate_bn

        supernet = load_supernet(tag)
        model = extract(supernet, supernet.largest())
        recalibrate_bn(model, calibration_loader(TINY_IMAGENET, 64, 64, 10, 0, rec["seed"]), "cpu")
        model.eval()
    else:
        model = create_model(name, pretrained=tag).eval()
    held_out = ShardDataset(TINY_IMAGENET, "val", build_transforms("none", rec["eval"]["input_size"], False),
                            val_fraction=rec["held_out"]["val_fraction"], limit=500)
    top1 = evaluate(model, DataLoader(held_out, batch_size=250, collate_fn=collate_skipping), device="cpu")["top1"]
    assert abs(top1 - rec["top1_500"]) <= 2.0
    assert rec["spec_hash"] == (supernet.spec if name == SHIPPED_NAME else model.spec).hash()
    assert rec["command"].startswith("python benchmarks/")


def test_the_training_size_of_a_shipped_file_comes_from_its_record(tmp_path: Path):
    tag = "carve:tiny-imagenet"
    if "carve_075" not in manifest().get(tag, {}):
        pytest.skip("carve_075 does not ship carve:tiny-imagenet weights")
    path = shipped_file(tag, "carve_075")
    assert trained_input_size(path) == record(tag, "carve_075")["eval"]["input_size"] == 64
    copy = tmp_path / path.name  # the same bytes outside the weights folder are not a shipped file
    copy.write_bytes(path.read_bytes())
    assert trained_input_size(copy) is None and trained_input_size(tmp_path / "missing.safetensors") is None
