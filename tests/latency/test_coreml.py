"""Core ML packages: written from a carve model, read back without Core ML, predicted only on macOS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from carve.latency.coreml_runtime import (coreml_predictor, export_mlpackage, folder_bytes, prediction_unavailable,
                                          read_mlpackage)
from carve.zoo import create_model

from ..compress.conftest import TINY_SPEC, randomize_bn


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_package_holds_the_models_interface_and_weights(tmp_path):
    torch.set_num_threads(1)
    model = randomize_bn(create_model(TINY_SPEC)).eval()
    path = export_mlpackage(model, tmp_path / "tiny.mlpackage", input_size=32)
    summary = read_mlpackage(path)
    assert summary.inputs == {"input": (1, 3, 32, 32)} and summary.outputs == {"logits": (1, 10)}
    layers = weight_layers(model)
    assert summary.ops["conv"] + summary.ops["linear"] == len(layers) == len(summary.weights)
    assert summary.weight_elements == sum(m.weight.numel() for m in layers)
    assert "batch_norm" not in summary.ops  # folded into the convolutions
    params = sum(p.numel() for p in model.parameters())
    assert 0.8 * 4 * params < summary.weight_file_bytes < 1.2 * 4 * params  # FP32 weights
    assert summary.package_bytes == folder_bytes(path) > summary.weight_file_bytes
    export_mlpackage(model, path, input_size=48)  # written again in place: swapped whole, nothing left over
    assert read_mlpackage(path).inputs == {"input": (1, 3, 48, 48)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.mlpackage"]


def test_fp16_package_halves_the_weights(tmp_path):
    model = create_model(TINY_SPEC).eval()
    fp32 = read_mlpackage(export_mlpackage(model, tmp_path / "a.mlpackage", input_size=32))
    fp16 = read_mlpackage(export_mlpackage(model, tmp_path / "b.mlpackage", input_size=32, fp16=True))
    assert 0.4 < fp16.weight_file_bytes / fp32.weight_file_bytes < 0.6
    diff = max(np.abs(a.values - b.values).max() for a, b in zip(fp32.weights, fp16.weights))
    assert 0 < diff < 1e-2


def test_bad_paths_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="m.onnx: a Core ML ML Program is written as a .mlpackage"):
        export_mlpackage(create_model(TINY_SPEC), tmp_path / "m.onnx", input_size=32)
    (tmp_path / "x.mlpackage").mkdir()
    with pytest.raises(ValueError, match="x.mlpackage: not a Core ML package"):
        read_mlpackage(tmp_path / "x.mlpackage")


@pytest.mark.hardware  # Core ML predicts on macOS only
def test_prediction_matches_pytorch_where_core_ml_runs(tmp_path):
    reason = prediction_unavailable()
    if reason is not None:
        with pytest.raises(RuntimeError, match="macOS"):
            coreml_predictor(tmp_path / "none.mlpackage")
        pytest.skip(reason)
    model = randomize_bn(create_model(TINY_SPEC)).eval()
    run = coreml_predictor(export_mlpackage(model, tmp_path / "tiny.mlpackage", input_size=32))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(run(x.numpy()) - ref).max() < 1e-3


@pytest.mark.slow  # one conversion per family: about 20 s each on the shared 2-core machine
@pytest.mark.parametrize("name", ["mobilenet_v3_small_075", "shufflenet_v2_050", "mobileone_s0", "efficientnet_b0",
                                  "rexnet_100", "mobilenet_v4_conv_small", "squeezenet_1_1", "carve_075"])
def test_every_family_converts_and_reads_back_exactly(name, tmp_path):
    from carve.compress import check_mlpackage
    from carve.zoo.mobileone import deployed

    model = randomize_bn(create_model(name, num_classes=10)).eval()
    check = check_mlpackage(model, export_mlpackage(model, tmp_path / "m.mlpackage", input_size=32), input_size=32)
    assert check.ok, check.problems
    assert check.weight_tensors == len(weight_layers(deployed(model))) and check.max_weight_diff < 1e-5
