"""Fixtures: a few real CIFAR-10 images per class copied to a temporary image folder, a tiny spec."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"
if not CIFAR.is_dir():
    CIFAR = Path("/work/shared/data/cifar10")
CLASSES = ("airplane", "automobile", "frog", "ship")

TINY_SPEC = {
    "name": "tiny", "family": "test",
    "stem": {"channels": 8, "kernel": 3, "stride": 1, "act": "relu"},
    "stages": [
        {"blocks": [{"kind": "ir", "out_channels": 16, "kernel": 3, "stride": 2, "act": "relu", "mid_channels": 16}]},
        {"blocks": [{"kind": "ir", "out_channels": 24, "kernel": 3, "stride": 2, "act": "relu", "mid_channels": 48},
                    {"kind": "ir", "out_channels": 24, "kernel": 3, "stride": 1, "act": "relu", "mid_channels": 48}]},
    ],
    "head": {"conv_channels": 64, "conv_act": "relu", "dropout": 0.0, "num_classes": 4},
}


def copy_subset(dst: Path, train_per_class: int, test_per_class: int, classes=CLASSES) -> Path:
    if not CIFAR.is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c in classes:
            out = dst / split / c
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted((CIFAR / split / c).iterdir())[:n]:
                shutil.copy(f, out / f.name)
    return dst


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 CIFAR-10 classes, 48 train and 16 test images each."""
    return copy_subset(tmp_path_factory.mktemp("cifar_tiny"), 48, 16)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
