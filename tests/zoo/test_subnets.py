"""Channel sub-networks with inherited weights: the basis of pruning and of search over sub-networks."""

from dataclasses import replace

import pytest
import torch

from carve.zoo import create_model
from carve.zoo.subnets import SubnetError, counts_for, inherit, pruned_spec


def _randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def test_inheriting_the_whole_network_is_the_same_function():
    torch.manual_seed(0)
    model = _randomize_bn(create_model("carve_075", num_classes=10))
    same = inherit(model, model.spec).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(same(x), model(x))


def test_dead_expansion_channels_are_the_ones_a_narrower_target_drops():
    torch.manual_seed(0)
    model = _randomize_bn(create_model("carve_075", num_classes=10))
    block = model.blocks[3][0]  # an inverted residual with an expansion conv
    mid = block.conv_pw.conv.out_channels
    with torch.no_grad():
        block.conv_pw.conv.weight[: mid // 4] = 0  # these expansion channels now carry nothing ...
        block.conv_pw.bn.bias[: mid // 4] = -10.0  # ... through BN and the activation ...
        block.conv_dw.conv.weight[: mid // 4] = 0  # ... nor through the depthwise conv and its BN
        block.conv_dw.bn.bias[: mid // 4] = -10.0
    spec = model.spec
    blocks = [list(s.blocks) for s in spec.stages]
    blocks[3][0] = replace(blocks[3][0], mid_channels=mid - mid // 4)
    target = replace(spec, stages=tuple(replace(s, blocks=tuple(b)) for s, b in zip(spec.stages, blocks)))
    narrow = inherit(model, target).eval()
    assert narrow.blocks[3][0].conv_pw.conv.out_channels == mid - mid // 4
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(narrow(x), model(x), rtol=1e-5, atol=1e-5)


def test_targets_that_are_not_sub_networks_are_refused():
    spec = create_model("carve_075").spec
    assert counts_for(spec, pruned_spec(spec, 0.25))  # a pruned spec is one
    with pytest.raises(SubnetError, match="not a channel sub-network"):
        counts_for(spec, create_model("mobilenet_v3_large_075").spec)
    with pytest.raises(SubnetError, match="has .* channels, carve_075 only"):
        counts_for(spec, create_model("carve_100").spec)
