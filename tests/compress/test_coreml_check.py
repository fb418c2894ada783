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
