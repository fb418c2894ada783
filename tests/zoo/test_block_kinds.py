"""The block kinds added for the rest of the family tree: spec round trips, field-naming validation,
the UIB variants, Fire, ShuffleNetV1 units and MobileOne's re-parameterisation."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from carve.zoo import SpecError, create_model, load_spec, parse_spec
from carve.zoo.mobileone import MobileOneBlock, deployed, reparameterize

from .specs import EVERY_KIND

CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10" / "test"

def cifar_images(n: int = 2, size: int = 32) -> torch.Tensor:
    """``n`` real CIFAR-10 test images, normalised (skips without the data set)."""
    from PIL import Image

    if not CIFAR.is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    files = sorted(p for d in sorted(CIFAR.iterdir()) for p in sorted(d.iterdir())[:1])[:n]
    xs = [torch.frombuffer(bytearray(Image.open(f).convert("RGB").resize((size, size)).tobytes()), dtype=torch.uint8)
          .view(size, size, 3).permute(2, 0, 1).float() / 255 for f in files]
    return (torch.stack(xs) - 0.45) / 0.25


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


# -- the spec ---------------------------------------------------------------------------------------

def test_every_new_kind_round_trips_through_json_and_yaml(tmp_path):
    spec = parse_spec(EVERY_KIND)
    assert parse_spec(json.loads(spec.to_json())) == spec
    again = load_spec(spec.save(tmp_path / "every.yaml"))
    assert again == spec and again.hash() == spec.hash()
    model = create_model(spec).eval()
    with torch.no_grad():
        assert model(cifar_images()).shape == (2, 10)
    # the options appear in the JSON only where they are set
    blocks = json.loads(spec.to_json())["stages"][0]["blocks"]
    assert "start_kernel" not in blocks[0] and blocks[1]["start_kernel"] == 3


def test_earlier_specs_keep_their_json():
    """Fields added for the new kinds are left out at their defaults: old specs hash as before."""
    data = create_model("mobilenet_v3_large_100").spec.to_dict()
    new_fields = {"start_kernel", "end_kernel", "groups", "first_groups", "branches"}
    assert all(not new_fields & set(b) for s in data["stages"] for b in s["blocks"])
    assert set(data["stem"]) == {"channels", "kernel", "stride", "act", "pool"}
    assert "pooling" not in data and "kind" not in data["norm"] and "classifier" not in data["head"]


def _bad(path: tuple, value, where: str = "stages") -> SpecError:
    data = json.loads(json.dumps(EVERY_KIND))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return err.value


@pytest.mark.parametrize("path, value, field, words", [
    ((0, 1, "kernel"), 4, "stages[0].blocks[1].kernel", "0 (none) or an odd"),
    ((0, 1, "start_kernel"), 2, "stages[0].blocks[1].start_kernel", "0 (none) or an odd"),
    ((0, 3, "stride"), 2, "stages[0].blocks[3].stride", "needs a depthwise conv"),
    ((0, 0, "start_kernel"), 3, "stages[0].blocks[0].start_kernel", "only uib blocks"),
    ((1, 0, "groups"), 5, "stages[1].blocks[0].groups", "must divide the input width 32"),
    ((1, 1, "branches"), 0, "stages[1].blocks[1].branches", "positive integer"),
    ((2, 0, "groups"), 5, "stages[2].blocks[0].groups", "must divide mid_channels 24"),
    ((2, 0, "first_groups"), 7, "stages[2].blocks[0].first_groups", "must divide the input width 48"),
    ((2, 1, "out_channels"), 90, "stages[2].blocks[1].out_channels", "keeps its width 96"),
    ((2, 2, "out_channels"), 97, "stages[2].blocks[2].out_channels", "must be even"),
    ((2, 2, "mid_channels"), None, "stages[2].blocks[2].mid_channels", "positive integer"),
    ((2, 3, "se"), {"ratio": 0.25}, "stages[2].blocks[3].se", "SE is supported on"),
])
def test_bad_new_fields_are_named(path, value, field, words):
    err = _bad(("stages",) + path, value)
    assert err.path == field and words in str(err), str(err)


@pytest.mark.parametrize("section, key, value, field", [
    ("stem", "kind", "rep", "stem.kind"), ("norm", "kind", "layer", "norm.kind"),
    ("head", "classifier", "mlp", "head.classifier"), ("head", "fc_channels", 0, "head.fc_norm"),
])
def test_bad_new_sections_are_named(section, key, value, field):
    data = json.loads(json.dumps(EVERY_KIND))
    data.setdefault(section, {})[key] = value
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert err.value.path == field


def test_mobileone_needs_symmetric_padding():
    with pytest.raises(SpecError) as err:
        parse_spec({**EVERY_KIND, "padding": "same"})
    assert err.value.path == "padding" and "symmetric" in str(err.value)
    with pytest.raises(SpecError, match="pooling"):
        parse_spec({**EVERY_KIND, "pooling": "floor"})


# -- the blocks -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("start, mid, end, where", [(3, 5, 0, "dw_mid"), (5, 0, 0, "dw_start"), (0, 0, 3, "dw_end"),
                                                      (0, 3, 0, "dw_mid")])
def test_uib_puts_the_stride_on_the_first_depthwise_that_exists(start, mid, end, where):
    spec = parse_spec({"stem": {"channels": 16}, "stages": [[{
        "kind": "uib", "out_channels": 24, "stride": 2, "kernel": mid, "start_kernel": start, "end_kernel": end,
        "expansion": 4}]], "head": {"num_classes": 0}})
    block = create_model(spec).blocks[0][0]
    strided = [name for name in ("dw_start", "dw_mid", "dw_end")
               if isinstance(getattr(block, name), nn.Sequential) and getattr(block, name).conv.stride == (2, 2)]
    assert strided == [where]
    assert isinstance(block.pw_exp, nn.Sequential)  # the expand conv is always there, even at expansion 1
    with torch.no_grad():
        assert create_model(spec).forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 24, 8, 8)


def test_fire_bypass_only_where_the_widths_match():
    spec = parse_spec({"stem": {"channels": 32}, "stages": [[
        {"kind": "fire", "out_channels": 32, "mid_channels": 8},
        {"kind": "fire", "out_channels": 32, "mid_channels": 8, "skip": "none"},
        {"kind": "fire", "out_channels": 64, "mid_channels": 8}]], "head": {"num_classes": 0}})
    blocks = create_model(spec).blocks[0]
    assert [b.has_skip for b in blocks] == [True, False, False]
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():  # the bypass adds the input to what the squeeze-expand path computes
        b = blocks[0].eval()
        s = b.squeeze(x)
        assert torch.allclose(b(x), torch.cat([b.expand1x1(s), b.expand3x3(s)], 1) + x)


def test_shuffle_v1_channel_shuffle_lets_every_group_see_every_input_group():
    torch.manual_seed(0)  # random weights: a seed where the ReLUs leave every path alive
    spec = parse_spec({"stem": {"channels": 24}, "stages": [[
        {"kind": "shuffle_v1", "out_channels": 48, "stride": 2, "mid_channels": 12, "groups": 3, "first_groups": 1},
        {"kind": "shuffle_v1", "out_channels": 48, "mid_channels": 12, "groups": 3}]], "head": {"num_classes": 0}})
    first, unit = create_model(spec).blocks[0]
    assert first.conv_pw.conv.groups == 1 and first.conv_pwl.conv.groups == 3 and unit.conv_pw.conv.groups == 3

    def reach(shuffles: bool) -> torch.Tensor:
        """How much input channels 16-47 (groups 1 and 2) move the first output group."""
        unit.eval().groups = 3 if shuffles else 1  # the unit shuffles only when it has groups
        x = (torch.rand(1, 48, 6, 6) + 0.1).requires_grad_()
        unit(x)[:, :16].sum().backward()
        return x.grad[:, 16:].abs().sum()

    assert reach(True) > 0
    assert reach(False) == 0  # without the shuffle a group's output sees only its own input group


# -- MobileOne: re-parameterisation -------------------------------------------------------------------

def test_reparameterize_gives_identical_outputs_and_one_conv_per_block():
    model = randomise_bn(create_model(EVERY_KIND)).eval().double()
    x = cifar_images().double()
    with torch.no_grad():
        before = model(x)
        n = model.reparameterize()
        after = model(x)
    assert n == 4  # the stem and three blocks
    assert (after - before).abs().max().item() <= 1e-10 * before.abs().max().item()
    for m in model.modules():
        if isinstance(m, MobileOneBlock):
            assert m.deployed and not any(isinstance(c, nn.BatchNorm2d) for c in m.modules())
            assert [type(c) for c in m.modules() if isinstance(c, nn.Conv2d) and c is m.reparam_conv] == [nn.Conv2d]
    assert model.reparameterize() == 0  # already deployed


def test_deployed_copy_leaves_the_training_form_and_matches_timm_deploy():
    import timm

    ours = randomise_bn(create_model("mobileone_s0")).eval()
    peer = timm.create_model("mobileone_s0").eval()
    peer.load_state_dict({k: v for k, v in zip(peer.state_dict(), ours.state_dict().values())})
    x = cifar_images(2, 64)
    with torch.no_grad():
        ref = ours(x)
        mine = deployed(ours)
        assert mine is not ours and any(isinstance(m, nn.BatchNorm2d) for m in ours.modules())
        reparameterize(peer)  # timm's own re-parameterisation, for comparison
        theirs = peer(x)
        out = mine(x)
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 1e-4 * scale
    assert (out - theirs).abs().max().item() <= 1e-4 * scale


@pytest.mark.parametrize("name", ["mobileone_s0", "squeezenet_1_0", "mobilenet_v4_conv_small"])
def test_pretrained_cfg_first_conv_is_the_input_conv(name):
    model = create_model(name)
    conv = dict(model.named_modules())[model.pretrained_cfg["first_conv"]]
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 3


def test_small_input_variant_refuses_to_unstride_a_shufflenet_v1_unit():
    from carve.zoo import for_small_images, get_entry

    spec = get_entry("shufflenet_v1_100").spec()
    assert for_small_images(spec, 2).blocks[0].stride == 2  # the stem's two strides go first
    with pytest.raises(SpecError, match="shuffle_v1 unit changes width"):
        for_small_images(spec, 3)
