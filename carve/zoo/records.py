"""What the registry records about a zoo model: its builder, peers, published figures and weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .spec import ArchSpec, NormSpec

TIMM_BN = NormSpec(eps=1e-5, momentum=0.1)


@dataclass(frozen=True)
class PublishedWeights:
    """A peer's published ImageNet weights for a zoo model.

    ``tag`` is what users pass as ``pretrained=``; ``source`` is torchvision, timm or carve (shipped
    in ``carve/weights``); ``peer_model`` names the peer's builder (a torchvision function or a timm
    ``name.tag``) or carve's file; ``top1`` is the published top-1 on ``dataset`` (ImageNet-1k for
    the peers, the held-out split for carve's own); ``norm`` overrides the spec's BN settings to
    match the weights.
    """

    tag: str
    source: str
    peer_model: str
    top1: float | None
    norm: NormSpec | None = None
    dataset: str = "imagenet-1k"


@dataclass(frozen=True)
class Published:
    """Params and MACs (millions) as published, with where the figures come from.

    ``input_size``: the resolution the MACs are given at. ``rounding``: the unit (millions) the
    source prints params and MACs to, where that is coarser than 2% of the figure (0: not);
    a count is consistent with a figure within half that unit. ``deviation``: why the model's
    count departs from the figure by more than that, where it does (the tests hold it to it).
    Re-parameterisable models are counted in their deployed form, as their papers count them.
    """

    params_m: float
    macs_m: float
    source: str
    input_size: int = 224
    rounding: tuple[float, float] = (0.0, 0.0)
    deviation: str = ""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    build: Callable[[], ArchSpec]
    torchvision: str | None = None
    timm: str | None = None
    weights: tuple[PublishedWeights, ...] = ()
    published: Published | None = None
    peer_norm: dict[str, NormSpec] = field(default_factory=dict)

    def spec(self) -> ArchSpec:
        return self.build()

    def weights_tags(self) -> list[str]:
        """The ``pretrained=`` tags this model's weights answer to."""
        return [w.tag for w in self.weights]


def torchvision_weights(tag: str, fn: str, top1: float, norm: NormSpec | None = None) -> PublishedWeights:
    return PublishedWeights(f"torchvision:{tag}", "torchvision", fn, top1, norm)


def timm_weights(name_tag: str, top1: float | None, norm: NormSpec | None = None) -> PublishedWeights:
    return PublishedWeights(f"timm:{name_tag.split('.', 1)[1]}", "timm", name_tag, top1, norm)
