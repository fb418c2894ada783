"""Folding and pruning for the later block kinds: fold keeps the function (MobileOne through its
deployed form), pruning handles UIB, fused-MBConv and MobileNetV4's head, and refuses the rest by name."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from carve.compress import PruneError, fold, prune, pruned_spec
from carve.zoo import count_params, create_model, parse_spec, save_weights
from carve.zoo.layers import DropPath

from tests.zoo.specs import EVERY_KIND

from .conftest import cifar_batches, randomize_bn

# one member per new family, and a spec with every new kind
FOLDED = ["mobilenet_v4_conv_small", "efficientnet_v2_b0", "mobileone_s0", "shufflenet_v1_050", "squeezenet_1_1",
          "mnasnet_small", "fbnet_c", EVERY_KIND]


def images() -> torch.Tensor:
    return cifar_batches("test", 1, batch_size=4)[0][0]


@pytest.mark.parametrize("name", FOLDED, ids=lambda n: n if isinstance(n, str) else "every_kind")
def test_fold_keeps_the_function_of_every_new_family(name):
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=10, drop_path_rate=0.1)).eval()
    x = images()
    with torch.no_grad():
        ref = model(x)
        folded, _ = fold(model)
        out = folded(x)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout, DropPath)) for m in folded.modules())
    assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) or model.spec.norm.kind == "none"


@pytest.mark.parametrize("name", ["mobilenet_v4_conv_small", "efficientnet_v2_b0"])
def test_uib_and_fused_models_prune_and_round_trip(name, tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(create_model(name, num_classes=10)).eval()
    x = images()
    pruned, spec = prune(model, ratio=0.4)
    assert count_params(pruned) < 0.75 * count_params(model)
    assert parse_spec(json.loads(spec.to_json())) == spec
    kinds = {b.kind for b in spec.blocks}
    assert kinds & {"uib", "fused"}
    assert all(b.mid_channels < a.mid_channels for a, b in zip(model.spec.blocks, spec.blocks)
               if b.kind in ("uib", "fused"))
    with torch.no_grad():
        y = pruned.eval()(x)
    rebuilt = create_model(save_weights(pruned, tmp_path / "p.safetensors")).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), y)


def test_pruning_nothing_from_a_uib_model_keeps_the_function():
    model = randomize_bn(create_model("mobilenet_v4_conv_small", num_classes=10)).eval()
    x = images()
    pruned, spec = prune(model, ratio=0.0)
    assert [(b.out_channels, b.mid_channels) for b in spec.blocks] == [
        (b.out_channels, b.mid_channels) for b in model.spec.blocks]
    with torch.no_grad():
        ref = model(x)
        assert (pruned.eval()(x) - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("name, words", [
    ("mobileone_s0", "stem.kind"),
    ("shufflenet_v1_050", "stages[0].blocks[0].kind: 'shuffle_v1'"),
    ("squeezenet_1_1", "without BatchNorm"),
])
def test_kinds_pruning_does_not_handle_are_refused_by_name(name, words):
    model = create_model(name, num_classes=10)
    with pytest.raises(PruneError) as err:
        prune(model, ratio=0.3)
    assert words in str(err.value)
    with pytest.raises(ValueError, match="cannot be pruned|does not handle"):
        pruned_spec(model.spec, 0.3)


def test_fire_and_mobileone_blocks_are_named_in_a_conv_stem_spec():
    spec = parse_spec({"stem": {"channels": 32}, "stages": [[
        {"kind": "uib", "out_channels": 32, "kernel": 3, "expansion": 2},
        {"kind": "mobileone", "out_channels": 32, "groups": 32}]], "head": {"num_classes": 10}})
    with pytest.raises(PruneError, match=r"stages\[0\]\.blocks\[1\]\.kind: 'mobileone': .*MobileOne blocks"):
        prune(create_model(spec), ratio=0.3)


@pytest.mark.parametrize("runtime", ["onnxruntime", pytest.param("torch", marks=pytest.mark.slow)])  # PT2E: minutes
def test_int8_runs_every_new_kind_close_to_fp32(runtime, tmp_path):
    from carve.compress import quantize

    torch.manual_seed(0)
    model = randomize_bn(create_model(EVERY_KIND)).eval()
    calib, test = cifar_batches("train", 3, 30), cifar_batches("test", 3, 30)
    kw = dict(out_dir=tmp_path) if runtime == "onnxruntime" else dict(compile=False)
    q, _ = quantize(model, calib=calib, runtime=runtime, calib_images=30, **kw)
    with torch.no_grad():
        ref = torch.cat([model(x) for x, _ in test])
        out = torch.cat([q(x) for x, _ in test])
    assert torch.isfinite(out).all()
    assert torch.corrcoef(torch.stack([ref.flatten(), out.flatten()]))[0, 1] > 0.9  # untrained: no top-1 to agree on
    if runtime == "onnxruntime":
        assert _weight_bytes(tmp_path / "model_int8.onnx") < 0.4 * _weight_bytes(tmp_path / "model_fp32.onnx")


def _weight_bytes(path) -> int:
    """Bytes the model's stored tensors take (the graph around them is the same size either way)."""
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)
