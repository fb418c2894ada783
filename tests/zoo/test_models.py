"""Every registered model trains a step, exposes its feature maps as described, and runs at 32 px."""

import pytest
import torch

from carve.zoo import create_model, for_small_images, get_entry, list_models

NAMES = list_models()
# SqueezeNet pools three times after its stem (stride 16) with Caffe's ceil rounding on unpadded
# layers, so its maps are not exactly input / stride.
UNPADDED = {"squeezenet_1_0", "squeezenet_1_1"}


def first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in model.stem.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_and_features(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, drop_path_rate=0.1).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 7)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert first_conv(model).weight.grad.abs().sum() > 0  # the gradient reaches the first layer

    features = create_model(name, features_only=True).eval()
    info = features.feature_info
    reductions = info.reduction()
    assert ({4, 8, 16} if name in UNPADDED else {4, 8, 16, 32}) <= set(reductions)
    assert reductions == sorted(reductions)
    with torch.no_grad():
        maps = features(x)
    assert len(maps) == len(info.out_indices)
    for fmap, chs, red in zip(maps, info.channels(), reductions):
        if name in UNPADDED:
            assert fmap.shape[:2] == (2, chs) and 64 // red - 3 <= fmap.shape[-1] <= 64 // red
        else:
            assert fmap.shape == (2, chs, 64 // red, 64 // red)
    # The features model shares the classifier's module names, so the same weights load into it.
    missing = set(features.state_dict()) - set(model.state_dict())
    assert not missing


@pytest.mark.parametrize("name", ["mobilenet_v3_large_100", "shufflenet_v2_100", "rexnet_100", "carve_100"])
@pytest.mark.parametrize("out_indices", [(1, 2, 3, 4), (2,), (-1,), (0, 3)])
def test_out_indices_subset(name, out_indices):
    full = create_model(name, features_only=True)
    sub = create_model(name, features_only=True, out_indices=out_indices)
    n = len(full.feature_info)
    expected = [full.feature_info[i % n] for i in out_indices]
    assert sub.feature_info.get_dicts() == expected
    sub.load_state_dict(full.state_dict(), strict=False)
    full.eval(), sub.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        all_maps, maps = full(x), sub(x)
    assert len(maps) == len(out_indices)
    for i, fmap in zip(out_indices, maps):
        assert torch.equal(fmap, all_maps[i % n])
        assert fmap.shape[1] == full.feature_info[i % n]["num_chs"]
        assert fmap.shape[-1] == 96 // full.feature_info[i % n]["reduction"]


def test_out_indices_out_of_range():
    with pytest.raises(ValueError, match="out_indices"):
        create_model("mobilenet_v2_100", features_only=True, out_indices=(9,))


@pytest.mark.parametrize("name", NAMES)
def test_small_input_variant_runs_at_32px(name):
    model = create_model(name, small_input=2, num_classes=10).eval()
    assert model.spec.name.endswith("_s2")
    base = get_entry(name).spec()
    assert max(model.feature_info.reduction()) == max(p["reduction"] for p in create_model(base).feature_info) // 4
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert model.spec == for_small_images(base, 2).with_num_classes(10)
