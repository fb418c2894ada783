"""``check_mlpackage``: a Core ML package matched against its PyTorch model, and mismatches named."""

from __future__ import annotations

import torch

from carve.compress.coreml_check import check_mlpackage, reference_weights
from carve.latency.coreml_runtime import export_mlpackage
from carve.zoo import create_model

from .conftest import TINY_SPEC, randomize_bn


def test_package_matches_its_model_and_not_another(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = randomize_bn(create_model(TINY_SPEC)).eval()
    path = export_mlpackage(model, tmp_path / "m.mlpackage", input_size=32)
    check = check_mlpackage(model, path, input_size=32)
    assert check.ok, check.problems
    assert check.input_shape == [1, 3, 32, 32] and check.output_shape == [1, 10]
    assert check.weight_tensors == check.reference_tensors == len(reference_weights(model, torch.zeros(1, 3, 32, 32)))
    assert check.weight_elements == check.reference_elements and check.max_weight_diff < 1e-5
    assert check.palettised_tensors == 0 and check.max_palette_size is None

    torch.manual_seed(1)
    other = randomize_bn(create_model(TINY_SPEC), seed=1).eval()
    wrong = check_mlpackage(other, path, input_size=32)
    assert not wrong.ok and wrong.max_weight_diff > 1e-2
    assert any("values differ from the folded model's" in p for p in wrong.problems)
    resized = check_mlpackage(model, path, input_size=48)
    assert any(p.startswith("inputs: expected {'input': (1, 3, 48, 48)}") for p in resized.problems)


def test_any_module_is_checked_and_clustered_with_its_batchnorm_folded(tmp_path):
    from torch import nn

    from carve.compress import cluster
    from carve.compress.clustering import distinct_per_palette

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2),
                          nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    randomize_bn(model).eval()
    check = check_mlpackage(model, export_mlpackage(model, tmp_path / "m.mlpackage", input_size=32), input_size=32)
    assert check.ok, check.problems
    assert "batch_norm" not in check.ops and check.weight_tensors == 3
    clustered, spec = cluster(model, bits=4)
    assert spec is None and len(clustered.cluster_layers) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in clustered.modules())
    assert all(distinct_per_palette(clustered.get_submodule(n)) <= 16 for n in clustered.cluster_layers)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert nn.functional.cosine_similarity(clustered(x), model(x), dim=1).min() > 0.9
    packed = check_mlpackage(clustered, export_mlpackage(clustered, tmp_path / "c.mlpackage", input_size=32),
                             input_size=32)
    assert packed.ok and packed.palettised_tensors == 3 and "batch_norm" not in packed.ops


def test_fp16_package_is_within_half_precision_of_the_model(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(create_model(TINY_SPEC)).eval()
    path = export_mlpackage(model, tmp_path / "h.mlpackage", input_size=32, fp16=True)
    half = check_mlpackage(model, path, input_size=32, tolerance=2e-3)
    assert half.ok, half.problems
    strict = check_mlpackage(model, path, input_size=32)  # FP32's tolerance: FP16 rounding shows
    assert not strict.ok and strict.max_weight_diff == half.max_weight_diff > 1e-4
