import pytest
import torch

from carve.finetune.backbone import DetectionBackbone, apply_freeze
from carve.finetune.heads import HEADS, build_detector
from carve.zoo import create_model

# one model per family, smallest width
FAMILIES = ["carve_075", "mobilenet_v1_025", "mobilenet_v2_035", "mobilenet_v3_small_075", "mobilenet_v3_large_075",
            "efficientnet_b0", "rexnet_100", "shufflenet_v2_050"]


@pytest.mark.parametrize("name", FAMILIES)
def test_adapter_maps_match_feature_info(name: str) -> None:
    info = create_model(name, features_only=True).feature_info
    strides = [p["reduction"] for p in info if p["reduction"] >= 8]
    adapter = DetectionBackbone(name, strides).eval()
    with torch.no_grad():
        maps = adapter(torch.rand(1, 3, 64, 96))
    assert list(maps) == [str(i) for i in range(len(strides))]
    for fmap, stride, chans in zip(maps.values(), strides, adapter.out_channels):
        want = [p["num_chs"] for p in info if p["reduction"] == stride][0]
        assert chans == want
        assert fmap.shape == (1, want, -(-64 // stride), -(-96 // stride))


@pytest.mark.parametrize("name, kind", [("mobilenet_v3_large_075", "expansion"), ("shufflenet_v2_050", "block")])
def test_expansion_tap_is_the_wider_c4_layer(name: str, kind: str) -> None:
    plain = DetectionBackbone(name, (16, 32))
    tapped = DetectionBackbone(name, (16, 32), expansion_tap=True)
    assert tapped.tap_kind == [kind, "block"]
    tapped.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = plain.eval()(x), tapped.eval()(x)
    assert a["0"].shape[-2:] == b["0"].shape[-2:] == (4, 4)
    assert b["0"].shape[1] == tapped.out_channels[0]
    torch.testing.assert_close(a["1"], b["1"])
    if kind == "expansion":
        assert tapped.out_channels[0] > plain.out_channels[0]


def test_expansion_tap_computes_the_expansion_once() -> None:
    tapped = DetectionBackbone("mobilenet_v3_large_075", (16, 32), expansion_tap=True).eval()
    calls: dict[str, list[torch.Tensor]] = {}
    for name, module in tapped.body.named_modules():
        if isinstance(module, torch.nn.Conv2d) or name == tapped.taps[0]:
            module.register_forward_hook(lambda m, i, o, name=name: calls.setdefault(name, []).append(o))
    with torch.no_grad():
        maps = tapped(torch.rand(1, 3, 64, 64))
    assert all(len(outputs) == 1 for outputs in calls.values())  # no layer runs twice for the tap
    torch.testing.assert_close(maps["0"], calls[tapped.taps[0]][0], rtol=0, atol=0)


def test_freeze_policy_and_frozen_bn() -> None:
    from torchvision.ops.misc import FrozenBatchNorm2d

    adapter = DetectionBackbone("mobilenet_v2_035", (16, 32))
    frozen = apply_freeze(adapter, 2)
    parts = adapter.stage_modules()
    assert frozen == sum(p.numel() for part in parts[:3] for p in part.parameters()) > 0
    assert all(not p.requires_grad for part in parts[:3] for p in part.parameters())
    assert all(p.requires_grad for part in parts[3:] for p in part.parameters())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in parts[1].modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in parts[3].modules())
    apply_freeze(adapter, "none", frozen_bn=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in adapter.modules())
    with pytest.raises(ValueError, match="freeze"):
        apply_freeze(adapter, "most")


@pytest.mark.parametrize("head", HEADS)
def test_every_head_trains_and_predicts_on_empty_and_full_images(head: str) -> None:
    torch.manual_seed(0)
    model = build_detector(head, "mobilenet_v3_small_075", num_classes=3, img_size=96, fpn_channels=32)
    images = [torch.rand(3, 96, 96), torch.rand(3, 80, 112)]
    targets = [dict(boxes=torch.tensor([[10.0, 12.0, 60.0, 70.0]]), labels=torch.tensor([2])),
               dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))]
    losses = model.train()(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    out = model.eval()(images)
    assert len(out) == 2 and out[1]["boxes"].shape[1] == 4
    assert (out[1]["boxes"][:, 2] <= 112 + 1e-3).all() and (out[1]["boxes"][:, 3] <= 80 + 1e-3).all()


def test_pooled_stem_taps_give_stride_2_and_4_maps():
    backbone = DetectionBackbone("shufflenet_v2_050", strides=(2, 4, 8), expansion_tap=False).eval()
    with torch.no_grad():
        maps = list(backbone(torch.randn(1, 3, 64, 64)).values())
    assert [m.shape[-1] for m in maps] == [32, 16, 8]
    assert [m.shape[1] for m in maps] == backbone.out_channels == [24, 24, 48]
