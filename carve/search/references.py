"""Reference models scored by a study's own objective, to put them on the same axes as its trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from carve.zoo import create_model

from .objective import Objective, ObjectiveConfig

DEFAULT_REFERENCES = ("mobilenet_v3_small_100", "mobilenet_v3_large_100", "shufflenet_v2_100", "carve_100")


def score_references(study: Any, names: list[str] | tuple[str, ...], out_dir: str | Path = "runs/search") -> dict:
    """Score zoo models with the study's own objective (same estimator, runtime and resolution rule; an
    ``inherited`` study scores them with their own pretrained weights, under the same tag; a ``supernet``
    study under the supernet's tag, or, when the supernet is a file, extracted from it when they are
    sub-networks of it).

    Results are cached on the study (user attr ``zoo_reference``), so plotting again is cheap.
    """
    attrs = study.user_attrs.get("carve", {})
    cached = dict(study.user_attrs.get("zoo_reference", {}))
    cfg = ObjectiveConfig.from_dict(attrs.get("objective", {}))
    resolution = attrs.get("resolution") or 224
    objective = Objective(cfg, out_dir)
    for name in names:
        if name in cached:
            continue
        spec = create_model(name).spec
        if cfg.accuracy == "inherited":  # a reference is scored with its own pretrained weights, not inherited ones
            tag = cfg.inherit_from.partition("@")[2]
            if not tag:
                raise ValueError(f"{name}: a reference of an 'inherited' study needs inherit_from as NAME@TAG, so "
                                 f"that it can load its own {name}@TAG weights")
            metrics = objective.cost(spec, resolution)
            metrics["accuracy"] = objective.inherited().score_model(create_model(name, pretrained=tag))
        elif cfg.accuracy == "supernet":
            metrics = objective.cost(spec, resolution)
            metrics["accuracy"] = _supernet_reference(objective, name, cfg.supernet)
        else:
            metrics = objective.evaluate(spec, resolution, name=f"zoo-{name}")
        cached[name] = dict(accuracy=metrics["accuracy"], latency_ms=metrics["latency_ms"])
        study.set_user_attr("zoo_reference", cached)
    return {n: cached[n] for n in names}


def _supernet_reference(objective: Objective, name: str, supernet: str) -> float:
    """A reference in a supernet study: its own weights under the supernet's tag, else (the supernet
    being a file) its weights extracted from the supernet, if it is a sub-network of it."""
    from carve.zoo.subnets import SubnetError

    estimator = objective.inherited()
    tag = supernet if ":" in supernet and not Path(supernet).suffix else None
    if tag is not None:
        return estimator.score_model(create_model(name, pretrained=tag))
    try:
        return estimator(create_model(name).spec)
    except SubnetError as exc:
        raise ValueError(f"{name}: not a sub-network of the supernet {supernet} (a file, so no weights of {name} "
                         f"come with it): {exc}") from None
