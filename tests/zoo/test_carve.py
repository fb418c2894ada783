"""The carve family keeps the structure its design brief asks for (timing lives in benchmarks/)."""

import pytest
from torch import nn

from carve.zoo import create_model, list_models
from carve.zoo.blocks import InvertedResidual

CARVE = list_models("carve_*")


def widths_by_stride(name: str) -> dict[int, int]:
    info = create_model(name, features_only=True).feature_info
    return {f["reduction"]: f["num_chs"] for f in info}


def test_at_least_three_sizes_growing_in_cost():
    assert len(CARVE) >= 3 and "carve_100" in CARVE
    params = [sum(p.numel() for p in create_model(n).parameters()) for n in CARVE]
    assert params == sorted(params)


@pytest.mark.parametrize("name", ["carve_100", "carve_125"])
def test_more_channels_than_mobilenet_v3_large_at_stride_4_and_8(name):
    ours, peer = widths_by_stride(name), widths_by_stride("mobilenet_v3_large_100")
    assert ours[4] > peer[4] and ours[8] > peer[8]


def test_channels_taken_from_late_layers():
    ours, peer = widths_by_stride("carve_100"), widths_by_stride("mobilenet_v3_large_100")
    assert ours[32] < peer[32]
    spec, peer_spec = create_model("carve_100").spec, create_model("mobilenet_v3_large_100").spec
    late = [b for b in spec.blocks if b.kind == "ir"][-2:]
    assert max(b.out_channels for b in late) < max(b.out_channels for b in peer_spec.blocks if b.kind == "ir")


@pytest.mark.parametrize("name", CARVE)
def test_design_rules(name):
    model = create_model(name)
    body = [model.stem, model.stem_pool, model.blocks]
    # No pooling or upsampling inside the body (SE's squeeze is a mean, not a pooling layer).
    for part in body:
        assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Upsample))
                       for m in part.modules())
    irs = [m for m in model.blocks.modules() if isinstance(m, InvertedResidual)]
    specs = [b for b in model.spec.blocks if b.kind == "ir"]
    assert len(irs) == len(specs) >= 8
    # Every stride-1 inverted residual has a skip, also where it widens (partial, ReXNet-style).
    for block, spec in zip(irs, specs):
        assert block.has_skip == (spec.stride == 1)
    assert any(b.partial for b in irs)
    # SE only where maps are small (stride 16 and 32).
    reduction = model.spec.stem.stride
    for b in model.spec.blocks:
        reduction *= b.stride
        if b.se is not None:
            assert reduction >= 16
    assert any(b.se is not None for b in specs)
