"""``carve export``: ONNX and OpenVINO IR, FP32 and INT8, each with its parity report on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from carve.cli import main
from carve.latency.artefact import open_artefact

CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"
TINY = {"name": "ship_tiny", "family": "carve", "stem": {"channels": 16, "stride": 1, "act": "relu"},
        "stages": [[{"kind": "ir", "out_channels": 24, "stride": 2, "expansion": 3, "act": "relu"}],
                   [{"kind": "ir", "out_channels": 40, "stride": 2, "expansion": 4, "act": "hardswish",
                     "se": {"ratio": 0.25}}]],
        "head": {"conv_channels": 64, "dropout": 0.0, "num_classes": 10}}


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    if not (CIFAR / "test").is_dir():
        pytest.skip("CIFAR-10 not found at ../shared/data/cifar10")
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def export(spec: Path, out: Path, *extra: str) -> dict:
    argv = ["export", str(spec), "-o", str(out), "--size", "32", "--data", str(CIFAR), "--parity-images", "60",
            "--calib-per-class", "4", *extra]
    assert main(argv) == 0
    report = json.loads(out.with_name(out.stem + ".report.json").read_text())
    assert report["artefact"] == str(out) and report["latency"]["median_ms"] > 0
    assert report["parity"]["images"] == 60 and report["fingerprint"]["threads"] == 1
    return report


@pytest.mark.slow  # four ONNX exports (dynamo) and two calibrations: ~4 min on the shared 2-core machine
def test_export_onnx_and_openvino_fp32_and_int8(spec_file: Path, tmp_path: Path) -> None:
    fp32 = export(spec_file, tmp_path / "fp32.xml", "--to", "openvino")
    assert fp32["parity"]["top1_agreement"] == 1.0 and fp32["parity"]["max_abs_diff"] < 1e-4
    assert (tmp_path / "fp32.bin").is_file() and fp32["input_shape"] == [1, 3, 32, 32]
    assert "openvino" in fp32["fingerprint"]
    ort = export(spec_file, tmp_path / "int8.onnx", "--int8", "--calib", str(CIFAR), "--dynamic-batch")
    assert ort["precision"] == "int8" and ort["input_shape"][0] is None and ort["calib_images"] == 40
    assert ort["parity"]["top1_agreement"] >= 0.85 and 1e-4 < ort["parity"]["max_abs_diff"] < 1.0
    art = open_artefact(tmp_path / "int8.onnx")  # the free batch axis really takes several images
    assert art.run(art.example(batch=3, size=32)).shape == (3, 10)
    ov = export(spec_file, tmp_path / "int8.xml", "--to", "openvino", "--int8", "--calib", str(CIFAR))
    assert ov["parity"]["top1_agreement"] >= 0.85 and ov["size_bytes"] < fp32["size_bytes"]
    q = open_artefact(tmp_path / "int8.xml").run(np.zeros((1, 3, 32, 32), np.float32))
    assert q.shape == (1, 10) and np.isfinite(q).all()


@pytest.mark.slow  # two torch.export + XNNPACK lowerings and a PT2E calibration: ~1.5 min here
def test_export_executorch_fp32_and_int8(spec_file: Path, tmp_path: Path) -> None:
    fp32 = export(spec_file, tmp_path / "fp32.pte", "--to", "executorch")
    assert fp32["runtime"] == "executorch" and fp32["input_shape"] == [1, 3, 32, 32]
    assert fp32["parity"]["top1_agreement"] == 1.0 and fp32["parity"]["max_abs_diff"] < 1e-4
    int8 = export(spec_file, tmp_path / "int8.pte", "--to", "executorch", "--int8", "--calib", str(CIFAR))
    assert int8["precision"] == "int8" and int8["size_bytes"] < fp32["size_bytes"]
    assert int8["parity"]["top1_agreement"] >= 0.85 and int8["parity"]["max_abs_diff"] > 1e-4
    assert "executorch" in int8["fingerprint"]


def test_export_refuses_bad_requests_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "carve_100", "--int8", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "calib: --int8 needs calibration images" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["export", "carve_100", "--num-classes", "10", "--to", "openvino", "-o", str(tmp_path / "m.pt")]) == 2
    assert "a --to openvino artefact is written as a .xml file" in capsys.readouterr().err
    assert main(["export", "carve_100", "--to", "executorch", "--dynamic-batch", "-o", str(tmp_path / "m.pte")]) == 2
    assert "dynamic_batch: the ExecuTorch export is written for batch 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
