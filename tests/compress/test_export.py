import torch

from carve.compress import fold, to_onnx, to_program, verify_onnx
from carve.zoo import create_model

from .conftest import TINY_SPEC, randomize_bn


def test_onnx_export_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(create_model("shufflenet_v2_050", num_classes=10)).eval()
    x = torch.randn(4, 3, 32, 32)
    check = to_onnx(model, tmp_path / "m.onnx", x)
    assert check.size_bytes > 0.9 * sum(p.numel() * 4 for p in model.parameters())
    assert check.max_abs_diff < 1e-4 and check.top1_agreement == 1.0 and check.images == 4
    # a folded model exports the same function
    folded, _ = fold(model)
    again = verify_onnx(folded, check.path, x)
    assert again.max_abs_diff < 1e-4


def test_torch_export_program_round_trips(tmp_path):
    model = create_model(TINY_SPEC).eval()
    path = to_program(model, tmp_path / "m.pt2", input_size=32)
    loaded = torch.export.load(str(path)).module()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
