"""Weights: local files (carve, torchvision, timm), published tags offline, preprocessing, bad input."""

import json
import time

import pytest
import timm
import torch
import torchvision

from carve.zoo import (PretrainedUnavailable, SpecError, WeightsError, create_model, get_entry, list_models,
                       load_spec, pretrained_cfg, read_weights_file, save_weights)
from carve.zoo.factory import default_weights, find_weights
from carve.zoo.registry import entries
from carve.zoo.shipped import manifest
from carve.zoo.supernet import SHIPPED_NAME

from .peers import build_peer, randomise_norms

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(X)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to float32 rounding (randomised BN statistics can make outputs large)."""
    return (a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item())


# -- names and files that don't fit -----------------------------------------------------------------

def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError) as err:
        create_model("mobilenet_v3_large_10")
    assert "mobilenet_v3_large_100" in str(err.value) and "mobilenet_v3_large_075" in str(err.value)
    with pytest.raises(KeyError, match="see list_models"):
        get_entry("vgg16")


def test_checkpoint_with_wrong_keys_lists_missing_and_unexpected(tmp_path):
    state = create_model("mobilenet_v2_050").state_dict()
    state["extra.weight"] = state.pop("classifier.weight")
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        create_model("mobilenet_v2_050", pretrained=str(path))
    message = str(err.value)
    assert str(path) in message
    assert "missing keys: classifier.weight" in message
    assert "unexpected keys: extra.weight" in message


def test_checkpoint_of_another_architecture_names_shapes(tmp_path):
    path = save_weights(create_model("mobilenet_v2_050"), tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match=r"shape mismatches: blocks\.0\.0\.conv_dw"):
        create_model("mobilenet_v2_100", pretrained=path)


def test_foreign_state_dict_of_another_architecture(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(build_peer("torchvision", "mobilenet_v3_small").state_dict(), path)
    with pytest.raises(WeightsError) as err:
        create_model("mobilenet_v2_100", pretrained=path)
    assert "missing keys" in str(err.value) and "torchvision state dict" in str(err.value)


def test_spec_file_errors_name_file_and_field(tmp_path):
    data = create_model("mobilenet_v2_050").spec.to_dict()
    data["stages"][2]["blocks"][1]["kernel"] = 4
    path = tmp_path / "net.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as err:
        create_model(path)
    assert str(err.value).startswith(f"{path}: stages[2].blocks[1].kernel:")
    assert "odd" in str(err.value) and str(err.value).endswith("4")

    path.write_text("{not json")
    with pytest.raises(SpecError, match=str(path)):
        load_spec(path)
    yaml_path = tmp_path / "net.yaml"
    yaml_path.write_text("stem: {channels: 16}\nstages: [[{kind: ir, out_channels: 16, stride: 3}]]\n")
    with pytest.raises(SpecError, match=r"net\.yaml: stages\[0\]\.blocks\[0\]\.stride: must be 1 or 2, got 3"):
        load_spec(yaml_path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        create_model(tmp_path / "missing.json")


# -- local files ------------------------------------------------------------------------------------

def test_save_weights_round_trip_with_spec_and_metrics(tmp_path):
    model = create_model("carve_075", num_classes=10, small_input=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = save_weights(model, tmp_path / "run" / "best.safetensors", metrics={"top1": 91.5, "epochs": 3})
    assert not list(path.parent.glob("*.tmp"))
    _, meta = read_weights_file(path)
    assert meta["metrics"] == {"top1": 91.5, "epochs": 3}
    assert meta["spec"] == model.spec.to_dict()

    again = create_model(path)  # the file alone rebuilds the model
    assert again.spec == model.spec
    assert again.pretrained_cfg["metrics"] == {"top1": 91.5, "epochs": 3}
    assert torch.equal(outputs(again), outputs(model))
    # ... and the same file loads as pretrained= into the matching spec, or as a feature extractor.
    same = create_model("carve_075", num_classes=10, small_input=1, pretrained=path)
    assert torch.equal(outputs(same), outputs(model))
    feats = create_model(path, features_only=True, out_indices=(-1,))
    assert feats.feature_info.channels() == [model.feature_info[-1]["num_chs"]]


def test_spec_only_weights_file_is_rejected_without_spec(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(create_model("mobilenet_v2_035").state_dict(), path)
    with pytest.raises(WeightsError, match="holds no carve spec"):
        create_model(path)
    assert torch.equal(outputs(create_model("mobilenet_v2_035", pretrained=path)),
                       outputs(create_model("mobilenet_v2_035", pretrained=path)))


def test_torchvision_state_dict_file_is_converted(tmp_path):
    peer = build_peer("torchvision", "mobilenet_v3_small")
    randomise_norms(peer)
    path = tmp_path / "tv.pth"
    torch.save({"model": peer.state_dict(), "epoch": 3}, path)  # a training checkpoint wrapper
    ours = create_model("mobilenet_v3_small_100", pretrained=path)
    assert ours.spec.norm.eps == 1e-3
    assert close(outputs(ours), outputs(peer))


def test_timm_state_dict_file_is_converted_with_timm_bn(tmp_path):
    peer = build_peer("timm", "mobilenetv3_small_100")
    randomise_norms(peer)
    path = tmp_path / "timm.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, str(path))
    ours = create_model("mobilenet_v3_small_100", pretrained=path)
    assert ours.spec.norm.eps == 1e-5  # timm's BN settings follow the timm weights
    assert close(outputs(ours), outputs(peer))


# -- published weights -----------------------------------------------------------------------------

def test_peer_tags_fail_fast_offline(monkeypatch):
    monkeypatch.setenv("CARVE_OFFLINE", "1")
    for name, tag in [("mobilenet_v3_large_100", "torchvision"), ("rexnet_100", True),
                      ("mobilenet_v2_100", "timm:ra_in1k")]:
        start = time.perf_counter()
        with pytest.raises(PretrainedUnavailable, match="pass the local file"):
            create_model(name, pretrained=tag)
        assert time.perf_counter() - start < 5
    with pytest.raises(PretrainedUnavailable, match="local file"):
        timm.create_model("carve_mobilenet_v3_small_100", pretrained=True)


def test_unknown_tags_and_models_without_weights(monkeypatch):
    monkeypatch.setenv("CARVE_OFFLINE", "1")  # both fail before any download; offline makes sure of it
    with pytest.raises(WeightsError, match="known: torchvision:IMAGENET1K_V1"):
        create_model("mobilenet_v2_100", pretrained="timm:nope")
    with pytest.raises(WeightsError, match="no published weights"):
        create_model("mobilenet_v1_025", pretrained=True)


def test_list_models_pretrained():
    with_weights = list_models(pretrained=True)
    assert with_weights and set(with_weights) < set(list_models())
    assert all(get_entry(n).weights for n in with_weights)
    shipped = {n for models in manifest().values() for n in models if n != SHIPPED_NAME}  # the supernet is no zoo model
    assert {n for n in with_weights if n.startswith("carve_")} == {n for n in shipped if n.startswith("carve_")}
    assert {"mobilenet_v3_large_100", "shufflenet_v2_100", "rexnet_200"} <= set(with_weights)
    assert list_models("rexnet_*", pretrained=True) == ["rexnet_100", "rexnet_130", "rexnet_150", "rexnet_200"]


def test_default_tag_is_best_published_top1():
    entry = get_entry("mobilenet_v2_100")
    assert default_weights(entry).tag == "timm:ra_in1k"  # 72.97 beats torchvision's 72.154
    assert find_weights(entry, "torchvision").tag == "torchvision:IMAGENET1K_V2"
    assert find_weights(entry, "torchvision:IMAGENET1K_V1").top1 == 71.878
    for e in entries():
        if e.weights:
            known = [w.top1 for w in e.weights if w.top1 is not None]
            assert default_weights(e).top1 == (max(known) if known else None)


WEIGHTS = [(e.name, w) for e in entries() for w in e.weights]


@pytest.mark.parametrize("name, weights", WEIGHTS, ids=[f"{n}-{w.tag}" for n, w in WEIGHTS])
def test_every_tag_has_the_peers_preprocessing(name, weights):
    spec = get_entry(name).spec()
    cfg = pretrained_cfg(weights, spec)
    assert cfg["tag"] == weights.tag and cfg["top1"] == weights.top1
    if weights.source == "carve":  # shipped: the preprocessing its manifest records
        ev = manifest()[weights.tag][name]["eval"]
        assert cfg["input_size"][-1] == ev["input_size"] and tuple(cfg["mean"]) == tuple(ev["mean"])
        assert tuple(cfg["std"]) == tuple(ev["std"])
    elif weights.source == "torchvision":
        t = torchvision.models.get_model_weights(weights.peer_model)[weights.tag.split(":")[1]].transforms()
        assert cfg["input_size"] == (3, t.crop_size[0], t.crop_size[0]) and cfg["resize"] == t.resize_size[0]
        assert cfg["interpolation"] == t.interpolation.value
        assert cfg["mean"] == tuple(t.mean) and cfg["std"] == tuple(t.std)
    else:
        pc = timm.models.get_pretrained_cfg(weights.peer_model)
        assert pc is not None, f"timm has no pretrained cfg {weights.peer_model}"
        assert (cfg["input_size"], cfg["crop_pct"], cfg["interpolation"], cfg["mean"], cfg["std"]) == (
            tuple(pc.input_size), pc.crop_pct, pc.interpolation, tuple(pc.mean), tuple(pc.std))
        # timm's MobileNetV3 weights were trained with BN eps 1e-5 and need it at inference.
        if "mobilenetv3" in weights.peer_model:
            assert weights.norm is not None and weights.norm.eps == 1e-5


def test_preprocessing_differs_between_weight_versions():
    entry = get_entry("mobilenet_v2_100")
    v1 = pretrained_cfg(find_weights(entry, "torchvision:IMAGENET1K_V1"), entry.spec())
    v2 = pretrained_cfg(find_weights(entry, "torchvision:IMAGENET1K_V2"), entry.spec())
    assert (v1["resize"], v2["resize"]) == (256, 232)
    assert v1["crop_pct"] == pytest.approx(224 / 256) and v2["crop_pct"] == pytest.approx(224 / 232)
    miil = pretrained_cfg(find_weights(get_entry("mobilenet_v3_large_100"), "timm:miil_in21k_ft_in1k"),
                          entry.spec())
    assert miil["mean"] == (0.0, 0.0, 0.0) and miil["std"] == (1.0, 1.0, 1.0)
