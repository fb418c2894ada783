"""``create_model``: a model from a registry name, a spec, a spec file or a weights file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from .model import CarveFeatures, CarveNet
from .registry import ModelEntry, PublishedWeights, get_entry
from .shipped import record, shipped_file
from .spec import ArchSpec
from .validation import load_spec, parse_spec
from .variants import for_small_images
from .weights import (WEIGHT_SUFFIXES, WeightsError, convert_weights, in_peer_order, load_state_dict_strict,
                      matching_peer, peer_source, peer_state_dict, read_weights_file)

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
    """The published weights matching ``tag``: 'timm:ra_in1k' exactly; 'torchvision' or 'timm' the best of that peer."""
    if entry is None:
        raise WeightsError(f"pretrained={tag!r}: peer tags need a registry model name, not a spec")
    options = [w for w in entry.weights if w.tag == tag or w.source == tag]
    if not options:
        known = ", ".join(w.tag for w in entry.weights) or "none"
        raise WeightsError(f"{entry.name}: no published weights {tag!r}; known: {known}")
    return max(options, key=_top1_key) if tag in ("torchvision", "timm") else options[0]


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
            published = default_weights(entry)
    elif isinstance(pretrained, (str, Path)) and pretrained:
        if Path(str(pretrained)).suffix in WEIGHT_SUFFIXES:
            weights_file = Path(str(pretrained))
        else:
            published = find_weights(entry, str(pretrained))
    if published is not None and published.source == "carve":
        weights_file = shipped_file(published.tag, entry.name)
    elif published is not None and published.norm is not None:
        spec = replace(spec, norm=published.norm)
    state: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if weights_file is not None:
        state, metadata = read_weights_file(weights_file)
        head = state.get("classifier.weight")
        if head is not None and head.dim() in (2, 4):  # a carve file: its classifier decides the width
            spec = spec.with_num_classes(int(head.shape[0]))
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
        model = _load_file(model, state, weights_file, entry)
    elif published is not None:
        model.load_state_dict(convert_weights(peer_state_dict(published), published.source, model))
    if published is not None and published.source == "carve":
        model.pretrained_cfg = pretrained_cfg(published, model.spec, record(published.tag, entry.name))
    else:
        model.pretrained_cfg = pretrained_cfg(published, model.spec)
    if weights_file is not None:
        model.pretrained_cfg.update(file=str(weights_file), metrics=metadata.get("metrics"))

    if num_classes is not None and num_classes != loaded_classes:
        model.reset_classifier(num_classes)
    if features_only:
        features = CarveFeatures(model.spec, out_indices, body=model)
        features.pretrained_cfg = model.pretrained_cfg
        return features
    return model


def default_weights(entry: ModelEntry) -> PublishedWeights:
    """The weights ``pretrained=True`` loads: the highest published ImageNet-1k top-1 (unknown top-1
    last), else the best of carve's shipped weights."""
    imagenet = [w for w in entry.weights if w.dataset == "imagenet-1k"]
    return max(imagenet or entry.weights, key=_top1_key)


def _top1_key(weights: PublishedWeights) -> float:
    return -1.0 if weights.top1 is None else weights.top1


def _load_file(model: CarveNet, state: dict[str, Any], path: Path, entry: ModelEntry | None) -> CarveNet:
    """Load a carve state dict strictly, or convert a torchvision/timm one saved to a file."""
    try:
        load_state_dict_strict(model, state, str(path))
        return model
    except WeightsError as strict_error:
        peers = dict(torchvision=entry.torchvision, timm=entry.timm) if entry is not None else {}
        source = matching_peer(state, peers)  # a twin's keys exactly (some twins share carve's block names)
        if source is None:
            ours = set(model.state_dict())
            if sum(k in ours for k in state) > len(state) // 2:
                raise  # carve names with some keys wrong: not a peer's state dict, report the mismatch
            source = peer_source(state, peers)
        try:
            if entry is not None and source in entry.peer_norm:
                model = CarveNet(replace(model.spec, norm=entry.peer_norm[source]))
            peer = getattr(entry, source, None) if entry is not None else None
            if peer is not None:
                state = in_peer_order(state, source, peer)
            model.load_state_dict(convert_weights(state, source, model))
        except WeightsError as exc:
            raise WeightsError(f"{strict_error}. Read as a {source} state dict instead, it does not fit "
                               f"either: {exc}") from None
    return model


def pretrained_cfg(weights: PublishedWeights | None, spec: ArchSpec,
                   shipped: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluation preprocessing of ``weights`` (resize, crop, interpolation, mean, std), timm-style keys;
    ``shipped`` is the manifest record of carve's own weights."""
    cfg: dict[str, Any] = dict(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bilinear",
                               mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=spec.head.num_classes,
                               first_conv="stem.conv_kxk.0.conv" if spec.stem.kind == "mobileone" else "stem.conv",
                               classifier="classifier", tag=None)
    if weights is None:
        return cfg
    cfg["tag"] = weights.tag
    cfg["top1"] = weights.top1
    cfg["dataset"] = weights.dataset
    if shipped is None and weights.source == "carve":
        from .shipped import manifest

        shipped = next((r for r in manifest().get(weights.tag, {}).values() if r.get("file") == weights.peer_model), {})
    if shipped is not None:
        ev = shipped.get("eval", {})
        size = int(ev.get("input_size", 224))
        cfg.update(input_size=(3, size, size), crop_pct=float(ev.get("crop_pct", 1.0)),
                   interpolation=ev.get("interpolation", "bilinear"), mean=tuple(ev.get("mean", IMAGENET_MEAN)),
                   std=tuple(ev.get("std", IMAGENET_STD)), top5=shipped.get("top5"))
    elif weights.source == "torchvision":
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
            if pc.test_input_size is not None:
                cfg.update(test_input_size=tuple(pc.test_input_size), test_crop_pct=pc.test_crop_pct)
    return cfg
