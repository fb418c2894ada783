"""The zoo as a table: each model's family, parameters, MACs, best published ImageNet top-1 and weights."""

from __future__ import annotations

from typing import Any

from .counting import profile
from .factory import create_model, default_weights
from .mobileone import deployed
from .registry import ModelEntry, get_entry, list_models


def best_imagenet_top1(entry: ModelEntry) -> float | None:
    """The best published ImageNet-1k top-1 of a model's weights (None when none is published)."""
    scores = [w.top1 for w in entry.weights if w.top1 is not None and w.dataset == "imagenet-1k"]
    return max(scores) if scores else None


def zoo_table(pattern: str = "*", pretrained: bool = False, input_size: int = 224,
              names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per model matching ``pattern`` (or the given ``names``): name, family, params_m, macs_m at
    ``input_size`` (of the deployed model), imagenet_top1; with ``pretrained`` only models with weights, each listed
    (tag, dataset, top-1, whether ``pretrained=True`` loads it)."""
    rows = []
    for name in names if names is not None else list_models(pattern, pretrained=pretrained):
        entry = get_entry(name)
        prof = profile(deployed(create_model(name)), input_size)  # MobileOne counted deployed, as published
        row: dict[str, Any] = dict(name=entry.name, family=entry.family, params_m=round(prof.params / 1e6, 3),
                                   macs_m=round(prof.macs / 1e6, 1), imagenet_top1=best_imagenet_top1(entry))
        if pretrained:
            best = default_weights(entry)
            row["weights"] = [dict(tag=w.tag, dataset=w.dataset, top1=w.top1, default=w is best)
                              for w in entry.weights]
        rows.append(row)
    return rows
