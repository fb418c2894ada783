"""The zoo's models are timm models too: create_model, features_only, data config, model listing."""

import pytest
import timm
import timm.data
import torch

import carve.zoo
from carve.zoo import create_model, list_models, pretrained_cfg
from carve.zoo.factory import find_weights
from carve.zoo.registry import get_entry


def test_every_zoo_model_is_listed_by_timm():
    assert timm.list_models("carve_*") == sorted("carve_" + n for n in list_models())
    assert carve.zoo.register_with_timm() == ["carve_" + n for n in list_models()]  # idempotent


def test_create_with_num_classes_and_drop_rates():
    model = timm.create_model("carve_mobilenet_v3_large_100", num_classes=10, drop_rate=0.3, drop_path_rate=0.1)
    assert model.spec == create_model("mobilenet_v3_large_100", num_classes=10, drop_rate=0.3,
                                      drop_path_rate=0.1).spec
    assert model.get_classifier().out_features == 10
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, model.num_features)
    with pytest.raises(ValueError, match="global_pool"):
        timm.create_model("carve_mobilenet_v2_100", global_pool="max")


def test_features_only_through_timm():
    model = timm.create_model("carve_mobilenet_v3_large_100", features_only=True, out_indices=(1, 2, 3, 4))
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [24, 40, 112, 960]
    maps = model(torch.randn(1, 3, 128, 128))
    assert [tuple(m.shape) for m in maps] == [(1, c, 128 // r, 128 // r) for c, r in
                                              zip(model.feature_info.channels(), model.feature_info.reduction())]


def test_timm_data_config_for_a_carve_model():
    model = timm.create_model("carve_rexnet_100")
    cfg = timm.data.resolve_data_config({}, model=model)
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 0.875
    transform = timm.data.create_transform(**cfg)
    assert "Resize(size=256" in repr(transform)

    # A model carrying published weights' preprocessing hands it to timm's data pipeline unchanged.
    entry = get_entry("mobilenet_v3_large_100")
    model.pretrained_cfg = pretrained_cfg(find_weights(entry, "timm:miil_in21k_ft_in1k"), entry.spec())
    cfg = timm.data.resolve_model_data_config(model)
    assert cfg["mean"] == (0.0, 0.0, 0.0) and cfg["interpolation"] == "bilinear"
    model.pretrained_cfg = pretrained_cfg(find_weights(entry, "torchvision:IMAGENET1K_V2"), entry.spec())
    assert timm.data.resolve_model_data_config(model)["crop_pct"] == pytest.approx(224 / 232)


def test_timm_default_cfg_registered():
    cfg = timm.models.get_pretrained_cfg("carve_carve_100")
    assert cfg.first_conv == "stem.conv" and cfg.classifier == "classifier"
    model = timm.create_model("carve_carve_100")
    assert isinstance(model.get_submodule(cfg.first_conv), torch.nn.Conv2d)
    assert isinstance(model.get_submodule(cfg.classifier), torch.nn.Linear)
