import shutil
from pathlib import Path

import pytest
import torch

from carve.finetune import ClassifyConfig, classify
from carve.zoo import create_model

CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    if not CIFAR.is_dir():
        pytest.skip(f"cifar10 not found at {CIFAR}")
    for split, src, n in (("train", "train", 12), ("val", "test", 6)):
        for cls in ("cat", "ship"):
            dst = tmp_path / "data" / split / cls
            dst.mkdir(parents=True)
            for f in sorted((CIFAR / src / cls).iterdir())[:n]:
                shutil.copy(f, dst / f.name)
    return tmp_path / "data"


def test_classify_freezes_stages_and_trains_a_new_head(tiny_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    before = create_model("mobilenet_v2_035", num_classes=2, small_input=2).state_dict()
    cfg = ClassifyConfig(backbone="mobilenet_v2_035", data=str(tiny_folder), out_dir=str(tmp_path / "run"), epochs=2,
                         batch_size=8, small_input=2, freeze=2, backbone_lr_mult=0.1, workers=0, progress=False,
                         tensorboard=False, seed=0)
    res = classify(cfg)
    after = res.model.state_dict()
    assert res.frozen_params > 0 and res.trainable_params > 0
    assert torch.equal(before["blocks.1.0.conv_pw.conv.weight"], after["blocks.1.0.conv_pw.conv.weight"])
    assert not torch.equal(before["blocks.5.0.conv_pw.conv.weight"], after["blocks.5.0.conv_pw.conv.weight"])
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert len(res.history) == 2 and 0 <= res.top1 <= 100
    reloaded = create_model(res.weights)
    assert reloaded.num_classes == 2
    with pytest.raises(ValueError, match="ClassifyConfig.lr"):
        ClassifyConfig(lr=0)
