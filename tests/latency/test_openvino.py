"""OpenVINO in the latency engine: timed with the protocol, cached by version, parity with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from carve.cli import main
from carve.latency import QUICK, measure
from carve.latency.artefact import artefact_format, open_artefact
from carve.latency.onnx_export import export_onnx
from carve.latency.openvino_runtime import convert_to_ir
from carve.latency.parity import check_parity
from carve.latency.runtime import RUNTIMES
from carve.zoo import create_model, parse_spec

TINY = dict(name="ov_tiny", family="test", stem=dict(channels=8),
            stages=[[dict(kind="ir", out_channels=16, stride=2, expansion=2, act="hardswish", se=dict(ratio=0.25))]],
            head=dict(num_classes=10))
CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"


def cifar_images(per_class: int = 2) -> list:
    if not (CIFAR / "test").is_dir():
        pytest.skip("CIFAR-10 not found at ../shared/data/cifar10")
    from carve.train import eval_loader

    return list(eval_loader(CIFAR, 32, 10, per_class=per_class, workers=0, split=("test",)))


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(parse_spec(TINY)).eval()
    for m in model.modules():  # non-trivial BN statistics so the graph is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_openvino_is_a_runtime_everywhere_one_is_chosen(capsys: pytest.CaptureFixture[str]) -> None:
    from carve.run.config import ZooSection
    from carve.search.objective import ObjectiveConfig

    assert "openvino" in RUNTIMES
    for cfg in (ObjectiveConfig, ZooSection):  # search and the main job take their choices from RUNTIMES
        assert cfg.__dataclass_fields__["runtime"].metadata["choices"] == RUNTIMES
    for command in (["latency", "measure"], ["zoo", "bench"], ["search", "run"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "runtime" in text and "openvino" in text, command


@pytest.mark.slow  # an ONNX export (dynamo) takes ~30 s on the shared 2-core machine
def test_measure_in_openvino_is_cached_by_its_version(tmp_path: Path) -> None:
    spec = parse_spec(TINY)
    kw = dict(input_size=32, threads=1, protocol=QUICK, cache=tmp_path / "lat.db")
    ov = measure(spec, runtime="openvino", **kw)
    assert ov.median_ms > 0 and ov.runs >= QUICK.min_runs and not ov.cached
    assert ov.conditions["runtime"] == "openvino" and ov.conditions["onnx_file"].endswith(".onnx")
    import openvino

    assert ov.fingerprint["openvino"] == openvino.__version__
    again = measure(spec, runtime="openvino", **kw)
    assert again.cached and again.median_ms == ov.median_ms
    ort = measure(spec, runtime="onnxruntime", **kw)  # same spec, other runtime: its own entry
    assert not ort.cached and "openvino" not in ort.fingerprint


@pytest.mark.slow  # an ONNX export (dynamo) takes ~30 s on the shared 2-core machine
def test_openvino_and_ort_match_pytorch_on_real_images(tmp_path: Path) -> None:
    model = tiny_model()
    images = cifar_images()
    onnx = export_onnx(model, tmp_path / "tiny.onnx", input_size=32)
    xml = convert_to_ir(onnx, tmp_path / "ir" / "tiny.xml")
    assert xml.with_suffix(".bin").is_file()
    for path, runtime in ((onnx, "onnxruntime"), (onnx, "openvino"), (xml, "openvino")):
        art = open_artefact(path, runtime, threads=1)
        assert art.input_shape == (1, 3, 32, 32)
        p = check_parity(model, art.run, images)
        assert p.images == 20 and p.top1_agreement == 1.0, (runtime, path.suffix, p)
        assert 0 < p.max_abs_diff < 1e-3, (runtime, path.suffix, p)
    broken = open_artefact(onnx, "onnxruntime", threads=1)
    off = check_parity(model, lambda x: broken.run(x) + np.eye(10, dtype=np.float32)[[0]] * 100, images)
    assert off.max_abs_diff > 99 and off.top1_agreement < 0.5  # a wrong artefact is caught


def test_artefacts_are_refused_by_name(tmp_path: Path) -> None:
    for name in ("model.pt", "model.pkl", "model.safetensors"):
        with pytest.raises(ValueError, match=rf"{name}: expected an ONNX file"):
            artefact_format(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="artefact not found"):
        open_artefact(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="ONNX Runtime opens ONNX files only"):
        open_artefact(tmp_path / "model.xml", "onnxruntime")


@pytest.mark.slow  # an ONNX export (dynamo) takes ~30 s on the shared 2-core machine
def test_latency_cli_measures_in_openvino(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = parse_spec(TINY).save(tmp_path / "tiny.json")
    assert main(["latency", "measure", str(path), "--runtime", "openvino", "--size", "32", "--threads", "1",
                 "--db", str(tmp_path / "lat.db"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["conditions"]["runtime"] == "openvino" and out["median_ms"] > 0
