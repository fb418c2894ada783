"""``carve export`` says when parity is checked at another size than the shipped weights were trained at."""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.compress.shipping import ExportConfig, export_model
from carve.zoo.shipped import manifest, shipped_file

CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"
TAG = "carve:tiny-imagenet"


def test_parity_away_from_the_training_size_is_flagged(tmp_path: Path) -> None:
    if not (CIFAR / "test").is_dir() or "carve_075" not in manifest().get(TAG, {}):
        pytest.skip("needs ../shared/data/cifar10 and the shipped carve_075 weights")
    weights = str(shipped_file(TAG, "carve_075"))

    def parity(size: int) -> dict:
        cfg = ExportConfig(model=weights, to="onnx", size=size, data=str(CIFAR), parity_images=8, latency=False,
                           out=str(tmp_path / f"m{size}.onnx"))
        return export_model(cfg)["parity"]

    away = parity(32)
    assert away["images"] == 8 and "--size 64" in away["note"]
    assert "note" not in parity(64)  # at its training size: nothing to say
