"""A space of channel sub-networks of one zoo model: per-stage widths, with the model's weights to inherit.

Every candidate is ``carve.zoo.subnets.pruned_spec`` of the base model at the sampled per-stage
keep fractions, so it can start from the base's pretrained weights (``carve.zoo.subnets.inherit``)
instead of from scratch: the accuracy estimator ``inherited`` scores it that way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from carve.zoo import ArchSpec, get_entry
from carve.zoo.subnets import pruned_spec

from .choices import FixedParams, RandomTrial, SpaceError, _ask, _closest


@dataclass(frozen=True)
class SubnetSpace:
    """Sub-networks of ``base``: each searched stage keeps one of ``keep`` of its channels, the head's
    hidden layer one of ``head``; ``resolution`` is the timing resolution."""

    name: str
    base: str
    keep: tuple[float, ...] = (0.5, 0.75, 1.0)
    stages: tuple[int, ...] = ()
    head: tuple[float, ...] = (1.0,)
    resolution: tuple[int, ...] = (224,)
    description: str = ""

    @cached_property
    def base_spec(self) -> ArchSpec:
        return get_entry(self.base).spec()

    @property
    def searched(self) -> tuple[int, ...]:
        """The stage indices with a width choice (default: all but the first)."""
        return self.stages or tuple(range(1, len(self.base_spec.stages)))

    def sample(self, trial: Any) -> ArchSpec:
        self.sample_resolution(trial)
        ratios = {f"blocks.{s}.": 1.0 - _ask(trial, f"s{s}.keep", self.keep) for s in self.searched}
        ratios["head_fc"] = 1.0 - _ask(trial, "head.keep", self.head)
        spec = pruned_spec(self.base_spec, 0.0, ratios=ratios)
        return spec.replace(name=f"{self.name}_{spec.hash()[:8]}", family=f"search_{self.name}")

    def sample_resolution(self, trial: Any) -> int:
        return _ask(trial, "resolution", self.resolution)

    def decode(self, params: dict[str, Any]) -> tuple[ArchSpec, int]:
        fixed = FixedParams(params)
        return self.sample(fixed), self.sample_resolution(fixed)

    def nearest(self, spec: ArchSpec, resolution: int | None = None) -> dict[str, Any]:
        """Params whose widths are closest to ``spec``'s stage by stage (its stages matched by position)."""
        base = self.base_spec
        if len(spec.stages) != len(base.stages):
            raise SpaceError("warm_start", f"{spec.name} has {len(spec.stages)} stages, {self.base} has "
                                           f"{len(base.stages)}: no nearest point")
        params: dict[str, Any] = {}
        if len(self.resolution) > 1:
            params["resolution"] = _closest(self.resolution, resolution or max(self.resolution))
        for s in self.searched:
            ratio = spec.stages[s].blocks[-1].out_channels / base.stages[s].blocks[-1].out_channels
            params[f"s{s}.keep"] = _closest(self.keep, ratio)
        if len(self.head) > 1:
            params["head.keep"] = _closest(self.head, spec.head.fc_channels / max(base.head.fc_channels, 1))
        return {k: v for k, v in params.items() if not k.endswith(".keep") or len(self.keep) > 1}

    def sample_random(self, seed: int | random.Random = 0) -> tuple[ArchSpec, int, dict[str, Any]]:
        t = RandomTrial(seed)
        spec = self.sample(t)
        return spec, self.sample_resolution(t), t.params

    def with_resolution(self, resolution: int) -> SubnetSpace:
        return replace(self, resolution=(int(resolution),))

    def size(self) -> int:
        return len(self.keep) ** len(self.searched) * len(self.head) * len(self.resolution)


def parse_subnet_space(data: dict[str, Any], where: str) -> SubnetSpace:
    """A ``kind: subnets`` space from plain data; errors name the field."""
    known = {"name", "kind", "base", "keep", "stages", "head", "resolution", "description"}
    for key in data:
        if key not in known:
            raise SpaceError(f"{where}.{key}", f"unknown field; expected one of {sorted(known)}")
    try:
        get_entry(str(data.get("base")))
    except KeyError as exc:
        raise SpaceError(f"{where}.base", str(exc.args[0])) from None

    def fractions(key: str, default: tuple) -> tuple[float, ...]:
        value = data.get(key, list(default))
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
                                 for v in values):
            raise SpaceError(f"{where}.{key}", f"expected fractions in (0, 1], got {value!r}")
        return tuple(float(v) for v in values)

    res = data.get("resolution", [224])
    res = res if isinstance(res, list) else [res]
    if not all(isinstance(r, int) and r >= 8 for r in res):
        raise SpaceError(f"{where}.resolution", f"expected sizes >= 8 px, got {data.get('resolution')!r}")
    space = SubnetSpace(name=str(data.get("name")), base=str(data["base"]), keep=fractions("keep", (0.5, 0.75, 1.0)),
                        stages=tuple(int(s) for s in data.get("stages", [])), head=fractions("head", (1.0,)),
                        resolution=tuple(res), description=str(data.get("description", "")))
    bad = [s for s in space.searched if not 0 <= s < len(space.base_spec.stages)]
    if bad:
        raise SpaceError(f"{where}.stages", f"{space.base} has stages 0-{len(space.base_spec.stages) - 1}, not {bad}")
    return space
