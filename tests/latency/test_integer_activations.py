"""Hard-swish rewritten for INT8 kernels: the same function, under the same module names."""

from __future__ import annotations

import torch

from carve.latency.integer_activations import IntegerHardswish, with_integer_hardswish
from carve.zoo import create_model, parse_spec

from .test_litert import RESIDUAL


def test_integer_hardswish_is_hardswish_under_the_same_names() -> None:
    model = create_model(parse_spec(RESIDUAL)).eval()
    swapped = with_integer_hardswish(model)
    assert not any(isinstance(m, torch.nn.Hardswish) for m in swapped.modules())
    hardswish = sum(isinstance(m, torch.nn.Hardswish) for m in model.modules())  # the caller's model is left alone
    assert hardswish == 6 and sum(isinstance(m, IntegerHardswish) for m in swapped.modules()) == 6  # stem, 2 per block, head
    assert [n for n, _ in swapped.named_modules()] == [n for n, _ in model.named_modules()]
    x = torch.randn(2, 3, 32, 32) * 4
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), model(x), rtol=1e-5, atol=1e-6)
    relu = create_model(parse_spec(dict(RESIDUAL, stem=dict(channels=16, act="relu"), head=dict(num_classes=10),
                                        stages=[[dict(kind="ir", out_channels=16, stride=1, act="relu")]])))
    assert with_integer_hardswish(relu) is relu  # nothing to replace: not copied
