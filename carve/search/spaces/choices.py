"""The search space itself: per-stage choices over the architecture spec, and the trials that answer them.

Sampling asks any object with ``suggest_categorical(name, choices)`` (an Optuna trial, or
:class:`RandomTrial`), so every sample is a valid :class:`ArchSpec`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from carve.zoo.spec import ArchSpec, BlockSpec, HeadSpec, NormSpec, SESpec, StageSpec, StemSpec, make_divisible
from carve.zoo.validation import validate

BLOCKS = ("ir", "shuffle", "uib")


class SpaceError(ValueError):
    """An invalid search space; the message names the field and what was expected."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class RandomTrial:
    """Answers ``suggest_categorical`` at random (seeded) and records the params, like a trial."""

    def __init__(self, seed: int | random.Random = 0):
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.params[name] = self.rng.choice(list(choices))
        return self.params[name]


class FixedParams:
    """Answers ``suggest_categorical`` from a params dict (decoding a finished trial)."""

    def __init__(self, params: dict[str, Any]):
        self.params = dict(params)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        if name not in self.params:
            raise SpaceError(name, f"missing from the trial's params (choices {list(choices)})")
        value = self.params[name]
        if value not in list(choices):
            raise SpaceError(name, f"value {value!r} is not one of the space's choices {list(choices)}")
        return value


@dataclass(frozen=True)
class StageChoice:
    depth: tuple[int, ...]
    width: tuple[int, ...]
    stride: int
    kernel: tuple[int, ...]
    expansion: tuple[float, ...]
    act: tuple[str, ...] | None
    se: tuple[bool, ...] | None
    start_kernel: tuple[int, ...] = (0,)

    def kernels(self, first: bool) -> tuple[int, ...]:
        """The middle-kernel choices of a block: a stage's strided first block needs a depthwise conv."""
        return tuple(k for k in self.kernel if k) if first and self.stride == 2 else self.kernel


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; :meth:`sample` turns a trial's answers into an ArchSpec.

    ``block`` ``uib`` (MobileNetV4-like): each block also chooses its start depthwise kernel
    (``start_kernel``), and a kernel of 0 drops that depthwise conv, so one space spans ExtraDW,
    inverted bottleneck, ConvNeXt-like and FFN blocks.
    """

    name: str
    block: str
    stem: StemSpec
    stages: tuple[StageChoice, ...]
    resolution: tuple[int, ...] = (224,)
    activation: tuple[str, ...] = ("relu",)
    se: tuple[bool, ...] = (False,)
    se_ratio: float = 0.25
    se_gate: str = "hardsigmoid"
    skip: str = "auto"
    last_conv: tuple[int, ...] = (0,)
    last_conv_act: str = "hardswish"
    head: HeadSpec = field(default_factory=HeadSpec)
    norm: NormSpec = field(default_factory=NormSpec)
    family: str = ""
    description: str = ""

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, trial: Suggester) -> ArchSpec:
        """Ask ``trial`` for every choice and build the spec (resolution is asked too: see
        :meth:`sample_resolution`)."""
        self.sample_resolution(trial)
        act = _ask(trial, "activation", self.activation)
        se_on = _ask(trial, "se", self.se)
        last = _ask(trial, "last_conv", self.last_conv)
        cin, stages = self.stem.channels, []
        for si, st in enumerate(self.stages):
            depth = _ask(trial, f"s{si}.depth", st.depth)
            width = _ask(trial, f"s{si}.width", st.width)
            s_act = act if st.act is None else _ask(trial, f"s{si}.act", st.act)
            s_se = se_on if st.se is None else _ask(trial, f"s{si}.se", st.se)
            blocks = []
            for bi in range(depth):
                stride = st.stride if bi == 0 else 1
                kernel = _ask(trial, f"s{si}.b{bi}.kernel", st.kernels(bi == 0))
                if self.block == "shuffle":
                    blocks.append(BlockSpec("shuffle", width, kernel, stride, act=s_act))
                else:
                    e = _ask(trial, f"s{si}.b{bi}.expansion", st.expansion)
                    mid = cin if e == 1 else make_divisible(cin * e)
                    se = SESpec(make_divisible(mid * self.se_ratio), "relu", self.se_gate) if s_se else None
                    extra = {}
                    if self.block == "uib":
                        extra["start_kernel"] = _ask(trial, f"s{si}.b{bi}.start_kernel", st.start_kernel)
                    blocks.append(BlockSpec(self.block, width, kernel, stride, act=s_act, mid_channels=mid, se=se,
                                            skip=self.skip, **extra))
                cin = width
            stages.append(StageSpec(tuple(blocks)))
        if last:
            tail = stages[-1].blocks + (BlockSpec("conv", last, 1, 1, act=self.last_conv_act),)
            stages[-1] = StageSpec(tail)
        spec = ArchSpec(name=self.name, family=self.family or f"search_{self.name}", stem=self.stem,
                        stages=tuple(stages), head=self.head, norm=self.norm)
        validate(spec)
        return spec.replace(name=f"{self.name}_{spec.hash()[:8]}")

    def sample_resolution(self, trial: Suggester) -> int:
        return _ask(trial, "resolution", self.resolution)

    def decode(self, params: dict[str, Any]) -> tuple[ArchSpec, int]:
        """(spec, resolution) from a finished trial's params."""
        fixed = FixedParams(params)
        return self.sample(fixed), self.sample_resolution(fixed)

    def nearest(self, spec: ArchSpec, resolution: int | None = None) -> dict[str, Any]:
        """Params of the space's point closest to ``spec`` (stages matched by position, each choice
        the one nearest to the spec's own value): a known architecture as a search's starting point."""
        stages = [list(st.blocks) for st in spec.stages]
        last = stages[-1].pop().out_channels if stages and stages[-1] and stages[-1][-1].kind == "conv" else 0
        if stages and not stages[-1]:  # the last 1x1 conv was a stage of its own
            stages.pop()
        if len(stages) != len(self.stages) or not all(stages):
            raise SpaceError("warm_start", f"{spec.name} has {len(stages)} stages of blocks, the space "
                                           f"{self.name!r} has {len(self.stages)}: no nearest point")
        params: dict[str, Any] = {}

        def pick(name: str, choices: tuple, value: Any) -> Any:
            chosen = _closest(choices, value)
            if len(choices) > 1:
                params[name] = chosen
            return chosen

        pick("resolution", self.resolution, resolution or max(self.resolution))
        # the global act/SE choices apply to the stages without a choice of their own
        pick("activation", self.activation,
             _majority([b.act for st, blocks in zip(self.stages, stages) if st.act is None for b in blocks]))
        pick("se", self.se,
             _majority([b.se is not None for st, blocks in zip(self.stages, stages) if st.se is None for b in blocks]))
        pick("last_conv", self.last_conv, last)
        cin = spec.stem.channels
        for si, (st, blocks) in enumerate(zip(self.stages, stages)):
            depth = pick(f"s{si}.depth", st.depth, len(blocks))
            pick(f"s{si}.width", st.width, blocks[-1].out_channels)
            if st.act is not None:
                pick(f"s{si}.act", st.act, _majority([b.act for b in blocks]))
            if st.se is not None:
                pick(f"s{si}.se", st.se, _majority([b.se is not None for b in blocks]))
            for bi in range(depth):
                b = blocks[min(bi, len(blocks) - 1)]
                pick(f"s{si}.b{bi}.kernel", st.kernels(bi == 0), b.kernel)
                if self.block == "uib":
                    pick(f"s{si}.b{bi}.start_kernel", st.start_kernel, b.start_kernel)
                if self.block in ("ir", "uib"):
                    block_in = cin if bi == 0 else blocks[min(bi, len(blocks)) - 1].out_channels
                    pick(f"s{si}.b{bi}.expansion", st.expansion, (b.mid_channels or block_in) / block_in)
            cin = blocks[-1].out_channels
        self.decode(params)  # every nearest point is a valid sample
        return params

    def sample_random(self, seed: int | random.Random = 0) -> tuple[ArchSpec, int, dict[str, Any]]:
        """One random (spec, resolution, params)."""
        t = RandomTrial(seed)
        spec = self.sample(t)
        return spec, self.sample_resolution(t), t.params

    def with_resolution(self, resolution: int) -> SearchSpace:
        from dataclasses import replace

        return replace(self, resolution=(int(resolution),))

    def size(self) -> int:
        """Number of distinct choice combinations (a rough count: per-block choices at max depth)."""
        n = len(self.resolution) * len(self.activation) * len(self.se) * len(self.last_conv)
        for st in self.stages:
            per_block = len(st.kernel) * (len(st.expansion) if self.block in ("ir", "uib") else 1)
            per_block *= len(st.start_kernel) if self.block == "uib" else 1
            n *= sum(per_block ** d for d in st.depth) * len(st.width) * len(st.act or (1,)) * len(st.se or (1,))
        return n


def _ask(trial: Suggester, name: str, choices: tuple) -> Any:
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))


def _closest(choices: tuple, value: Any) -> Any:
    """The choice equal to ``value``, else the numerically nearest one (the first on a tie)."""
    if value in choices:
        return value
    numeric = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
        return min(numeric, key=lambda c: abs(c - value))
    return choices[0]


def _majority(values: list) -> Any:
    return max(set(values), key=lambda v: (values.count(v), str(v))) if values else None


# -- parsing -----------------------------------------------------------------------------------

