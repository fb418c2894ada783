import pytest
import torch
from torch import nn

from carve.compress import fold
from carve.zoo import create_model
from carve.zoo.layers import DropPath

from .conftest import FAMILIES, randomize_bn


@pytest.mark.parametrize("name", FAMILIES)
def test_fold_matches_unfolded_for_every_family(name):
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=10, drop_path_rate=0.1)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        folded, spec = fold(model)
        out = folded(x)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout, DropPath)) for m in folded.modules())
    assert spec.drop_path_rate == 0 and spec.head.dropout == 0
    scale = max(1.0, ref.abs().max().item())
    assert (out - ref).abs().max().item() <= 1e-5 * scale
    # the original is untouched
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
