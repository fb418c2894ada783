"""``carve export``: ONNX and OpenVINO IR, FP32 and INT8, each with its parity report on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

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


@pytest.mark.slow  # two LiteRT conversions and a PT2E calibration: ~1 min here
def test_export_litert_fp32_and_int8(spec_file: Path, tmp_path: Path) -> None:
    fp32 = export(spec_file, tmp_path / "fp32.tflite", "--to", "litert")
    assert fp32["runtime"] == "litert" and fp32["input_shape"] == [1, 3, 32, 32]
    assert fp32["parity"]["top1_agreement"] == 1.0 and fp32["parity"]["max_abs_diff"] < 1e-4
    int8 = export(spec_file, tmp_path / "int8.tflite", "--to", "litert", "--int8", "--calib", str(CIFAR))
    assert int8["precision"] == "int8" and int8["size_bytes"] < fp32["size_bytes"]
    assert int8["parity"]["top1_agreement"] >= 0.85 and int8["parity"]["max_abs_diff"] > 1e-4
    assert "litert" in int8["fingerprint"]


def test_export_refuses_bad_requests_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "carve_100", "--int8", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "calib: --int8 needs calibration images" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["export", "carve_100", "--num-classes", "10", "--to", "openvino", "-o", str(tmp_path / "m.pt")]) == 2
    assert "a --to openvino artefact is written as a .xml file" in capsys.readouterr().err
    assert main(["export", "carve_100", "--to", "executorch", "--dynamic-batch", "-o", str(tmp_path / "m.pte")]) == 2
    assert "dynamic_batch: the ExecuTorch export is written for batch 1" in capsys.readouterr().err
    assert main(["export", "carve_100", "--to", "litert", "--dynamic-batch", "-o", str(tmp_path / "m.tflite")]) == 2
    assert "dynamic_batch: the LiteRT export is written for batch 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_export_keep_float_is_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "m.onnx")
    assert main(["export", "carve_100", "--num-classes", "10", "--keep-float", "classifier", "-o", out]) == 2
    assert "keep_float: keeps modules in FP32 within an INT8 export: add --int8" in capsys.readouterr().err
    # the calibration folder does not exist either: the pattern is refused first, by its index
    argv = ["export", "carve_100", "--num-classes", "10", "--int8", "--calib", str(tmp_path / "none"), "-o", out]
    assert main(argv + ["--keep-float", "classifier", "*.nothing"]) == 2
    assert "keep_float[1]: pattern '*.nothing' matches no module of the model" in capsys.readouterr().err
    assert main(argv + ["--keep-float", "classifier"]) == 2  # a good pattern goes on to the (missing) images
    assert "none: image folder not found" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_export_coreml_checked_by_reading_it_back(spec_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)  # the spec's random weights: the same model whatever ran before in this process
    out = tmp_path / "tiny.mlpackage"
    argv = ["export", str(spec_file), "--to", "coreml", "-o", str(out), "--size", "32", "--data", str(CIFAR),
            "--parity-images", "20"]
    assert main(argv + ["--cluster-bits", "6"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "tiny.report.json").read_text())
    assert report["runtime"] == "coreml" and report["input_shape"] == [1, 3, 32, 32] and out.is_dir()
    check = report["package_check"]
    assert check["ok"] and check["max_weight_diff"] == 0 and check["max_palette_size"] == 64
    assert check["palettised_tensors"] == report["clustering"]["layers"] == check["reference_tensors"]
    clustering = report["clustering"]
    assert clustering["vs_fp32"]["images"] == 20 and clustering["vs_fp32"]["top1_agreement"] >= 0.8
    assert clustering["packed_bytes"] < check["weight_file_bytes"] < 1.2 * clustering["packed_bytes"]
    if "parity" not in report:  # Core ML predicts on macOS only: said, with the evidence, never silently
        assert "Core ML predicts only on macOS" in report["parity_skipped"] and "parity not measured" in printed
        assert report["latency_skipped"]
    assert "package read back: " in printed and ": ok" in printed
    assert main(argv[:-2] + ["--parity-images", "5"]) == 0  # FP32, written over the palettised one
    fp32 = json.loads((tmp_path / "tiny.report.json").read_text())
    assert fp32["precision"] == "fp32" and "clustering" not in fp32
    assert fp32["package_check"]["weight_file_bytes"] > 3.5 * check["weight_file_bytes"]


def test_export_coreml_refuses_what_it_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "m.mlpackage")
    assert main(["export", "carve_100", "--to", "coreml", "--int8", "--calib", "x", "-o", out]) == 2
    assert "int8: Core ML calibrates activations by running the model" in capsys.readouterr().err
    assert main(["export", "carve_100", "--cluster-bits", "4", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "cluster_bits: applies to --to coreml only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "carve_100", "--to", "coreml", "--cluster-bits", "5", "-o", out])
    assert "--cluster-bits: invalid choice: 5" in capsys.readouterr().err
    assert main(["export", "carve_100", "--to", "coreml", "--dynamic-batch", "-o", out]) == 2
    assert "dynamic_batch: the Core ML export is written for batch 1" in capsys.readouterr().err
    assert main(["export", "carve_100", "--to", "coreml", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "a --to coreml artefact is written as a .mlpackage file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
