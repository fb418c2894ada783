"""Registers every zoo model with timm as ``carve_<name>`` so timm's tooling applies to it."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .registry import entries

PREFIX = "carve_"
# timm passes these to every entrypoint; they have no meaning for carve models.
_IGNORED = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "scriptable", "exportable", "no_jit")

default_cfgs: dict[str, dict[str, Any]] = {}


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    def create(pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
        from .factory import create_model

        for key in _IGNORED:
            kwargs.pop(key, None)
        pool = kwargs.pop("global_pool", "avg")
        if pool not in ("avg", ""):
            raise ValueError(f"global_pool: carve models pool by average only, got {pool!r}")
        return create_model(name, pretrained=pretrained, **kwargs)

    create.__name__ = PREFIX + name
    create.__qualname__ = PREFIX + name
    create.__module__ = __name__
    create.__doc__ = f"carve zoo model {name!r} (see carve.zoo.create_model)"
    return create


def register_with_timm() -> list[str]:
    """Register all zoo models with timm (idempotent); return the timm names."""
    import timm.models._registry as reg

    names = []
    for entry in entries():
        timm_name = PREFIX + entry.name
        names.append(timm_name)
        if timm_name in reg._model_entrypoints:
            continue
        default_cfgs[timm_name] = dict(
            url="", num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
            interpolation="bilinear", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
            first_conv="stem.conv", classifier="classifier", license="apache-2.0",
        )
        fn = _entrypoint(entry.name)
        globals()[timm_name] = fn
        reg.register_model(fn)
    return names
