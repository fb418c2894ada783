"""``carve supernet train|extract`` on a few real CIFAR-10 images."""

from __future__ import annotations

import json

import torch

from carve.cli import main
from carve.zoo import create_model
from carve.zoo.supernet import extract, load_supernet

from ..train.conftest import copy_subset
from ..train.test_supernet_training import TINY


def test_train_then_extract_a_subnetwork(tmp_path, capsys) -> None:
    torch.set_num_threads(1)
    data = copy_subset(tmp_path / "data", 8, 4)
    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(TINY.to_dict()))
    out = tmp_path / "run"
    assert main(["supernet", "train", "--space", str(space), "--data", str(data), "--out-dir", str(out),
                 "--epochs", "1", "--batch-size", "16", "--img-size", "32", "--aug", "none", "--workers", "0",
                 "--bn-recalibration", "1", "--device", "cpu", "--progress", "false", "--lr", "0.05"]) == 0
    assert "top-1 largest" in capsys.readouterr().out
    spec_file = tmp_path / "spec.json"
    spec = TINY.sample(3)
    spec_file.write_text(spec.to_json())
    weights = tmp_path / "sub.safetensors"
    assert main(["supernet", "extract", str(out / "final.safetensors"), str(spec_file), "-o", str(weights),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hash"] == spec.hash()
    model = create_model(str(weights)).eval()
    reference = extract(load_supernet(out / "final.safetensors"), spec).eval()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(images), reference(images))
    # with --data its BatchNorm statistics are re-estimated on those images
    assert main(["supernet", "extract", str(out / "final.safetensors"), "smallest", "-o", str(weights),
                 "--data", str(data), "--img-size", "32", "--batches", "1", "--batch-size", "8"]) == 0
    assert create_model(str(weights)).pretrained_cfg["metrics"]["bn_images"] == 8
    assert main(["supernet", "extract", str(out / "final.safetensors"), "mobilenet_v3_small_100"]) == 2
    assert "not a sub-network" in capsys.readouterr().err
