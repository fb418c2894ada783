"""``create_model``: a model from a registry name, a spec, a spec file or a weights file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from .model import CarveFeatures, CarveNet
from .registry import ModelEntry, PublishedWeights, get_entry
from .spec import ArchSpec, for_small_images, load_spec, parse_spec
from .weights import (WEIGHT_SUFFIXES, WeightsError, convert_weights, load_state_dict_strict, peer_state_dict,
                      read_weights_file)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_spec(name_or_spec: str | Path | ArchSpec | dict) -> tuple[ArchSpec, ModelEntry | None, Path | None]:
    """Turn what the user passed into (spec, registry entry if any, weights file if any)."""
    if isinstance(name_or_spec, ArchSpec):
        return name_or_spec, None, None
    if isinstance(name_or_spec, dict):
        return parse_spec(name_or_spec), None, None
    text = str(name_or_spec)
    path = Path(text)
    if path.suffix in (".json", ".yaml", ".yml"):
        return load_spec(path), None, None
    if path.suffix in WEIGHT_SUFFIXES:
        _, meta = read_weights_file(path)
        if "spec" not in meta:
            raise WeightsError(f"{path}: holds no carve spec; pass a model name and pretrained='{path}' instead")
        return parse_spec(meta["spec"]), None, path
    entry = get_entry(text)
    return entry.spec(), entry, None


def find_weights(entry: ModelEntry | None, tag: str) -> PublishedWeights:
    """The published weights matching ``tag`` ('torchvision', 'timm', 'timm:ra_in1k', ...)."""
    if entry is None:
        raise WeightsError(f"pretrained={tag!r}: peer tags need a registry model name, not a spec")
    options = [w for w in entry.weights if w.tag == tag or w.source == tag]
    if not options:
        known = ", ".join(w.tag for w in entry.weights) or "none"
        raise WeightsError(f"{entry.name}: no published weights {tag!r}; known: {known}")
    return options[-1] if tag in ("torchvision", "timm") else options[0]


def create_model(
    name_or_spec: str | Path | ArchSpec | dict,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    small_input: int = 0,
    in_chans: int | None = None,
) -> nn.Module:
    """Build a zoo model (timm conventions).

    ``name_or_spec``: a registry name, an ArchSpec or dict, a .json/.yaml spec file, or a carve
    weights file (.safetensors/.pt holding a spec). ``pretrained``: False, True (the entry's best
    published weights), a peer tag ('torchvision', 'timm', 'timm:ra_in1k', ...) or a local weights
    file. ``small_input`` removes that many early strides (for 32 px images). ``features_only``
    returns the feature maps at ``out_indices`` of ``feature_info``.
    """
    spec, entry, weights_file = resolve_spec(name_or_spec)
    published = None
    if pretrained is True:
        if weights_file is None:
            if entry is None or not entry.weights:
                raise WeightsError(f"{spec.name}: no published weights; pass a local file as pretrained=")
            published = entry.weights[0]
    elif isinstance(pretrained, (str, Path)) and pretrained:
        if Path(str(pretrained)).suffix in WEIGHT_SUFFIXES:
            weights_file = Path(str(pretrained))
        else:
            published = find_weights(entry, str(pretrained))
    if published is not None and published.norm is not None:
        spec = replace(spec, norm=published.norm)
    loaded_classes = spec.head.num_classes
    if drop_rate is not None:
        spec = replace(spec, head=replace(spec.head, dropout=drop_rate))
    if drop_path_rate is not None:
        spec = replace(spec, drop_path_rate=drop_path_rate)
    if small_input:
        spec = for_small_images(spec, small_input)
    if in_chans is not None:
        spec = replace(spec, in_channels=in_chans)

    model = CarveNet(spec)
    if weights_file is not None:
        state, _ = read_weights_file(weights_file)
        try:
            load_state_dict_strict(model, state, str(weights_file))
        except WeightsError:
            state = convert_weights(state, "timm" if "conv_stem.weight" in state else "torchvision", model)
            model.load_state_dict(state)
    elif published is not None:
        model.load_state_dict(convert_weights(peer_state_dict(published), published.source, model))
    model.pretrained_cfg = pretrained_cfg(published, spec)

    if num_classes is not None and num_classes != loaded_classes:
        model.reset_classifier(num_classes)
    if features_only:
        features = CarveFeatures(model.spec, out_indices)
        features.load_state_dict(model.state_dict(), strict=False)
        features.pretrained_cfg = model.pretrained_cfg
        return features
    return model


def pretrained_cfg(weights: PublishedWeights | None, spec: ArchSpec) -> dict[str, Any]:
    """Evaluation preprocessing of ``weights`` (resize, crop, interpolation, mean, std), timm-style keys."""
    cfg: dict[str, Any] = dict(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bilinear",
                               mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=spec.head.num_classes,
                               first_conv="stem.conv", classifier="classifier", tag=None)
    if weights is None:
        return cfg
    cfg["tag"] = weights.tag
    cfg["top1"] = weights.top1
    if weights.source == "torchvision":
        import torchvision

        enum = torchvision.models.get_model_weights(weights.peer_model)
        t = enum[weights.tag.split(":", 1)[1]].transforms()
        crop, resize = t.crop_size[0], t.resize_size[0]
        cfg.update(input_size=(3, crop, crop), crop_pct=crop / resize, interpolation=t.interpolation.value,
                   mean=tuple(t.mean), std=tuple(t.std), resize=resize)
    else:
        import timm

        pc = timm.models.get_pretrained_cfg(weights.peer_model)
        if pc is not None:
            cfg.update(input_size=tuple(pc.input_size), crop_pct=pc.crop_pct, interpolation=pc.interpolation,
                       mean=tuple(pc.mean), std=tuple(pc.std), crop_mode=pc.crop_mode)
    return cfg
