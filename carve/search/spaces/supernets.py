"""The sub-networks of a trained supernet as a search space (``kind: supernet``).

The choices are the supernet's own (``carve.zoo.ElasticSpace``: per-stage depth and width,
per-block kernel and expansion, stem and last-conv width, resolution), read from the supernet's
file or shipped record. Every candidate can take its weights from the supernet
(``carve.zoo.extract``), which is how the ``supernet`` accuracy estimator scores it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from carve.zoo import ArchSpec
from carve.zoo.elastic import ElasticSpace, subnetwork_plan
from carve.zoo.supernet import supernet_space

from .choices import FixedParams, RandomTrial, SpaceError, _ask, _closest


@dataclass(frozen=True)
class SupernetSpace:
    """Sub-networks of the supernet in ``supernet`` (a file or a tag such as ``carve:tiny-imagenet``);
    ``resolution`` overrides the supernet's resolution choices."""

    name: str
    supernet: str
    resolution: tuple[int, ...] = ()
    description: str = ""

    @cached_property
    def elastic(self) -> ElasticSpace:
        space = supernet_space(self.supernet)
        return replace(space, resolution=self.resolution) if self.resolution else space

    def sample(self, trial: Any) -> ArchSpec:
        params = self.elastic.params(lambda name, options: _ask(trial, name, options))
        spec = self.elastic.spec_of(params)
        return spec.replace(name=f"{self.name}_{spec.hash()[:8]}", family=f"search_{self.name}")

    def sample_resolution(self, trial: Any) -> int:
        asked = getattr(trial, "params", None) or {}
        return asked["resolution"] if "resolution" in asked else _ask(trial, "resolution", self.elastic.resolution)

    def decode(self, params: dict[str, Any]) -> tuple[ArchSpec, int]:
        fixed = FixedParams(params)
        return self.sample(fixed), self.sample_resolution(fixed)

    def nearest(self, spec: ArchSpec, resolution: int | None = None) -> dict[str, Any]:
        """Params of the sub-network closest to ``spec`` stage by stage (depth, width, kernels, expansions)."""
        space = self.elastic
        if len(spec.stages) != len(space.stages):
            raise SpaceError("warm_start", f"{spec.name} has {len(spec.stages)} stages, the supernet "
                                           f"{len(space.stages)}: no nearest point")
        params: dict[str, Any] = dict(resolution=_closest(space.resolution, resolution or max(space.resolution)),
                                      stem=_closest(space.stem, spec.stem.channels))
        cin = spec.stem.channels
        for si, (stage, choice) in enumerate(zip(spec.stages, space.stages)):
            irs = [b for b in stage.blocks if b.kind == "ir"]
            params[f"s{si}.depth"] = _closest(choice.depth, len(irs))
            params[f"s{si}.width"] = _closest(choice.width, irs[-1].out_channels if irs else max(choice.width))
            for bi in range(max(choice.depth)):
                b = irs[min(bi, len(irs) - 1)] if irs else None
                params[f"s{si}.b{bi}.kernel"] = _closest(choice.kernel, b.kernel if b else choice.kernel[0])
                ratio = (b.mid_channels or cin) / cin if b else choice.expansion[0]
                params[f"s{si}.b{bi}.expansion"] = _closest(choice.expansion, ratio)
                cin = b.out_channels if b and bi < len(irs) else cin
        others = [b for b in spec.stages[-1].blocks if b.kind == "conv"]
        params["last_conv"] = _closest(space.last_conv, others[-1].out_channels if others else max(space.last_conv))
        options = dict(space.choices())
        return {k: v for k, v in params.items() if len(options[k]) > 1}

    def sample_random(self, seed: int | random.Random = 0) -> tuple[ArchSpec, int, dict[str, Any]]:
        t = RandomTrial(seed)
        spec = self.sample(t)
        return spec, self.sample_resolution(t), t.params

    def with_resolution(self, resolution: int) -> SupernetSpace:
        return replace(self, resolution=(int(resolution),))

    def size(self) -> int:
        return self.elastic.size()

    def check(self, spec: ArchSpec) -> None:
        """``SubnetError`` unless ``spec`` is a sub-network of the supernet."""
        subnetwork_plan(self.elastic.largest(), spec.with_num_classes(self.elastic.num_classes))


def parse_supernet_space(data: dict[str, Any], where: str) -> SupernetSpace:
    """A ``kind: supernet`` space from plain data; errors name the field."""
    known = {"name", "kind", "supernet", "resolution", "description"}
    for key in data:
        if key not in known:
            raise SpaceError(f"{where}.{key}", f"unknown field; expected one of {sorted(known)}")
    source = data.get("supernet")
    if not isinstance(source, str) or not source:
        raise SpaceError(f"{where}.supernet", f"expected a supernet weights file or tag (carve:tiny-imagenet), got "
                                              f"{source!r}")
    res = data.get("resolution", [])
    res = res if isinstance(res, list) else [res]
    if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 8 for r in res):
        raise SpaceError(f"{where}.resolution", f"expected sizes >= 8 px, got {data.get('resolution')!r}")
    space = SupernetSpace(name=str(data.get("name") or f"supernet_{Path(source).stem}"), supernet=source,
                          resolution=tuple(res), description=str(data.get("description", "")))
    try:
        space.size()  # reads the supernet's space now, so a bad file is named here
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # WeightsError is a RuntimeError
        raise SpaceError(f"{where}.supernet", str(exc)) from None
    return space
