"""The architecture spec: one declarative, serialisable description of a backbone.

A spec is a tree of frozen dataclasses (stem, stages of blocks, head, normalisation) that
round-trips exactly through JSON/YAML and carries a stable hash. Every channel count is explicit,
so a pruned or searched network is just another spec. On load, conveniences are accepted and
resolved (``expansion`` instead of ``mid_channels``, an SE ``ratio`` instead of ``channels``);
everything is validated, and errors name the field path and the bad value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ACTIVATIONS = ("relu", "relu6", "hardswish", "silu", "none")
GATES = ("sigmoid", "hardsigmoid")
BLOCK_KINDS = ("conv", "ds", "ir", "shuffle")
SKIPS = ("auto", "none", "partial")
PADDINGS = ("symmetric", "same")

SPEC_VERSION = 1


class SpecError(ValueError):
    """An invalid architecture spec; the message names the field and the bad value."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to a multiple of ``divisor``, never dropping more than 10% (TF/timm rule)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


@dataclass(frozen=True)
class NormSpec:
    """Batch-norm settings; peers differ (torchvision MobileNetV3: eps 1e-3, momentum 0.01)."""

    eps: float = 1e-5
    momentum: float = 0.1


@dataclass(frozen=True)
class SESpec:
    """Squeeze-and-excitation: pool, 1x1 reduce (+BN), act, 1x1 expand, gate."""

    channels: int
    act: str = "relu"
    gate: str = "sigmoid"
    norm: bool = False


@dataclass(frozen=True)
class BlockSpec:
    """One block of the body.

    kind ``conv``: conv-BN-act. ``ds``: depthwise conv-BN-act, [SE], pointwise conv-BN-[act].
    ``ir``: [1x1 expand conv-BN-act], depthwise conv-BN-[dw_act], [SE], 1x1 project conv-BN
    (no expand conv when ``mid_channels`` equals the input width). ``shuffle``: ShuffleNetV2 unit
    (channel split at stride 1, two branches at stride 2, concat and channel shuffle).
    ``skip``: ``auto`` adds the input when stride is 1 and widths match, ``partial`` also when the
    block widens (added to the first input-width channels, as in ReXNet), ``none`` never.
    """

    kind: str
    out_channels: int
    kernel: int = 3
    stride: int = 1
    act: str = "relu"
    mid_channels: int | None = None
    dw_act: str | None = None
    se: SESpec | None = None
    se_before_dw_act: bool = False
    pw_act: bool = False
    skip: str = "auto"

    @property
    def dw_activation(self) -> str:
        return self.act if self.dw_act is None else self.dw_act


@dataclass(frozen=True)
class StemSpec:
    """Stem: one conv-BN-act, optionally followed by a 3x3/2 max pool (ShuffleNetV2)."""

    channels: int
    kernel: int = 3
    stride: int = 2
    act: str = "relu"
    pool: bool = False


@dataclass(frozen=True)
class StageSpec:
    blocks: tuple[BlockSpec, ...]


@dataclass(frozen=True)
class HeadSpec:
    """Head: [1x1 conv-BN-act], global average pool, [linear+act with bias], dropout, classifier."""

    conv_channels: int = 0
    conv_act: str = "relu"
    fc_channels: int = 0
    fc_act: str = "hardswish"
    dropout: float = 0.2
    num_classes: int = 1000


@dataclass(frozen=True)
class ArchSpec:
    """A whole backbone. ``family`` and ``name`` are labels; the rest defines the module tree."""

    name: str
    family: str
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    norm: NormSpec = field(default_factory=NormSpec)
    padding: str = "symmetric"
    in_channels: int = 3
    drop_path_rate: float = 0.0
    version: int = SPEC_VERSION

    # -- derived views -------------------------------------------------------------------------
    @property
    def blocks(self) -> list[BlockSpec]:
        return [b for s in self.stages for b in s.blocks]

    @property
    def num_features(self) -> int:
        """Width of the pooled feature vector fed to the classifier."""
        if self.head.fc_channels:
            return self.head.fc_channels
        if self.head.conv_channels:
            return self.head.conv_channels
        return self.body_channels

    @property
    def body_channels(self) -> int:
        blocks = self.blocks
        return blocks[-1].out_channels if blocks else self.stem.channels

    def block_inputs(self) -> list[int]:
        """Input width of each block, in order."""
        widths, cin = [], self.stem.channels
        for b in self.blocks:
            widths.append(cin)
            cin = b.out_channels
        return widths

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def hash(self) -> str:
        """Stable 16-hex-digit hash of everything that defines the module tree (not the name)."""
        data = self.to_dict()
        data.pop("name")
        data.pop("family")
        canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> ArchSpec:
        return replace(self, **changes)

    def with_num_classes(self, num_classes: int) -> ArchSpec:
        return replace(self, head=replace(self.head, num_classes=num_classes))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        text = self.to_json() if path.suffix != ".yaml" else _yaml_dump(self.to_dict())
        path.write_text(text)
        return path


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in fields(obj):
            out[f.name] = _to_plain(getattr(obj, f.name))
        return out
    if isinstance(obj, (list, tuple)):
        return [_to_plain(x) for x in obj]
    return obj


def _yaml_dump(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
