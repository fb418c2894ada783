import math

import pytest
import torch

from carve.search.proxies import PROXIES, compute_proxies
from carve.zoo import create_model


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)


def _net(width: float):
    """A three-block inverted-residual net whose widths scale with ``width``."""
    torch.manual_seed(0)
    w = lambda c: max(4, int(c * width))  # noqa: E731
    spec = dict(name="t", family="t", stem=dict(channels=w(16), stride=1),
                stages=[[dict(kind="ir", out_channels=w(16), expansion=2, act="relu"),
                         dict(kind="ir", out_channels=w(32), stride=2, expansion=3, act="hardswish")],
                        [dict(kind="ir", out_channels=w(32), expansion=3, act="hardswish")]],
                head=dict(num_classes=10, dropout=0.0))
    return create_model(spec)


def test_all_proxies_and_baselines_are_finite(batch):
    scores = compute_proxies(_net(0.35), *batch)
    assert set(scores) == set(PROXIES) | {"params", "macs"}
    for name, value in scores.items():
        assert math.isfinite(value), name
    assert scores["params"] == sum(p.numel() for p in _net(0.35).parameters())


def test_synflow_and_size_grow_with_width(batch):
    small = compute_proxies(_net(0.35), *batch, names=["synflow", "params", "macs"])
    large = compute_proxies(_net(0.75), *batch, names=["synflow", "params", "macs"])
    for key in small:
        assert large[key] > small[key], key


def test_naswot_separates_distinct_inputs_from_identical_ones(batch):
    images, labels = batch
    distinct = compute_proxies(_net(0.35), images, labels, names=["naswot"])["naswot"]
    same = compute_proxies(_net(0.35), images[:1].repeat(8, 1, 1, 1), labels, names=["naswot"])["naswot"]
    assert distinct > same  # identical samples give a singular kernel


def test_proxies_leave_the_model_untouched(batch):
    net = _net(0.35)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    compute_proxies(net, *batch)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())


def test_unknown_proxy_is_named(batch):
    with pytest.raises(ValueError, match="zen"):
        compute_proxies(_net(0.35), *batch, names=["zen"])
