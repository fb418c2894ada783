"""Declarative search spaces: choices over the architecture spec, read from YAML/JSON.

A space file names fixed values or lists of choices per stage (depth, width, stride, kernel,
expansion, act, se) and globally (resolution, activation, se, last_conv). A stage's ``act``/``se``
default to the global choice. ``kernel`` and ``expansion`` are chosen per block (Once-for-All),
the rest per stage. Sampling asks any object with ``suggest_categorical(name, choices)`` (an
Optuna trial, or :class:`RandomTrial`), so every sample is a valid :class:`ArchSpec`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carve.zoo.spec import (ACTIVATIONS, ArchSpec, BlockSpec, HeadSpec, NormSpec, SESpec, StageSpec, StemSpec,
                            make_divisible)
from carve.zoo.validation import validate

from .choices import FixedParams, RandomTrial, SpaceError, Suggester, _ask, _closest
from .subnets import SubnetSpace, parse_subnet_space

BUILTIN_DIR = Path(__file__).parent
BLOCKS = ("ir", "shuffle")
_STAGE_KEYS = ("depth", "width", "stride", "kernel", "expansion", "act", "se")
_TOP_KEYS = ("name", "description", "family", "block", "resolution", "activation", "se", "se_ratio", "se_gate",
             "skip", "stem", "stages", "last_conv", "head", "norm")


@dataclass(frozen=True)
class StageChoice:
    depth: tuple[int, ...]
    width: tuple[int, ...]
    stride: int
    kernel: tuple[int, ...]
    expansion: tuple[float, ...]
    act: tuple[str, ...] | None
    se: tuple[bool, ...] | None


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; :meth:`sample` turns a trial's answers into an ArchSpec."""

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
                kernel = _ask(trial, f"s{si}.b{bi}.kernel", st.kernel)
                if self.block == "shuffle":
                    blocks.append(BlockSpec("shuffle", width, kernel, stride, act=s_act))
                else:
                    e = _ask(trial, f"s{si}.b{bi}.expansion", st.expansion)
                    mid = cin if e == 1 else make_divisible(cin * e)
                    se = SESpec(make_divisible(mid * self.se_ratio), "relu", self.se_gate) if s_se else None
                    blocks.append(BlockSpec("ir", width, kernel, stride, act=s_act, mid_channels=mid, se=se,
                                            skip=self.skip))
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
                pick(f"s{si}.b{bi}.kernel", st.kernel, b.kernel)
                if self.block == "ir":
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
            per_block = len(st.kernel) * (len(st.expansion) if self.block == "ir" else 1)
            n *= sum(per_block ** d for d in st.depth) * len(st.width) * len(st.act or (1,)) * len(st.se or (1,))
        return n


def _majority(values: list) -> Any:
    return max(set(values), key=lambda v: (values.count(v), str(v))) if values else None


# -- parsing -----------------------------------------------------------------------------------

def _choices(value: Any, path: str, kind: type | tuple[type, ...], check=None, what: str = "") -> tuple:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SpaceError(path, "expected a value or a non-empty list of choices, got []")
    for v in values:
        ok = isinstance(v, kind) and not (isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)))
        if not ok or (check is not None and not check(v)):
            raise SpaceError(path, f"expected {what}, got {v!r}")
    return tuple(values)


def _pos_int(v: Any) -> bool:
    return v > 0


def parse_space(data: Any, where: str = "space") -> SearchSpace | SubnetSpace:
    """Build a :class:`SearchSpace` (or, for ``kind: subnets``, a :class:`SubnetSpace`) from plain data;
    errors name the field (``stages[2].kernel``)."""
    if not isinstance(data, dict):
        raise SpaceError(where, f"expected a mapping, got {type(data).__name__}")
    if data.get("kind") == "subnets":
        return parse_subnet_space(data, where)
    for key in data:
        if key not in _TOP_KEYS:
            raise SpaceError(f"{where}.{key}", f"unknown field; expected one of {sorted(_TOP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SpaceError(f"{where}.name", f"expected a non-empty string, got {name!r}")
    block = data.get("block", "ir")
    if block not in BLOCKS:
        raise SpaceError(f"{where}.block", f"expected one of {list(BLOCKS)}, got {block!r}")
    acts = ", ".join(ACTIVATIONS)
    stem_raw = data.get("stem")
    if not isinstance(stem_raw, dict):
        raise SpaceError(f"{where}.stem", f"expected a mapping like {{channels: 16}}, got {stem_raw!r}")
    try:
        stem = StemSpec(**stem_raw)
    except TypeError as exc:
        raise SpaceError(f"{where}.stem", str(exc)) from exc
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise SpaceError(f"{where}.stages", f"expected a non-empty list of stages, got {raw_stages!r}")
    stages = []
    for si, raw in enumerate(raw_stages):
        p = f"{where}.stages[{si}]"
        if not isinstance(raw, dict):
            raise SpaceError(p, f"expected a mapping, got {raw!r}")
        for key in raw:
            if key not in _STAGE_KEYS:
                raise SpaceError(f"{p}.{key}", f"unknown field; expected one of {list(_STAGE_KEYS)}")
        for key in ("depth", "width"):
            if key not in raw:
                raise SpaceError(f"{p}.{key}", "missing required field")
        stride = raw.get("stride", 1)
        if stride not in (1, 2) or isinstance(stride, bool):
            raise SpaceError(f"{p}.stride", f"expected 1 or 2, got {stride!r}")
        even = block == "shuffle"
        stage = StageChoice(
            depth=_choices(raw["depth"], f"{p}.depth", int, _pos_int, "positive integers"),
            width=_choices(raw["width"], f"{p}.width", int, (lambda v: v > 0 and v % 2 == 0) if even else _pos_int,
                           "positive even integers (shuffle units split channels)" if even else "positive integers"),
            stride=stride,
            kernel=_choices(raw.get("kernel", 3), f"{p}.kernel", int, lambda v: v > 0 and v % 2 == 1,
                            "odd positive integers"),
            expansion=_choices(raw.get("expansion", 1), f"{p}.expansion", (int, float), lambda v: v >= 1,
                               "numbers >= 1"),
            act=None if "act" not in raw else _choices(raw["act"], f"{p}.act", str, lambda v: v in ACTIVATIONS,
                                                       f"one of {acts}"),
            se=None if "se" not in raw else _choices(raw["se"], f"{p}.se", bool, None, "true/false"),
        )
        if block == "shuffle" and stride == 1 and len(stage.width) > 1 and si == 0:
            raise SpaceError(f"{p}.width", "a first shuffle stage at stride 1 keeps the stem width; give one width")
        if block == "shuffle" and (stage.se and True in stage.se):
            raise SpaceError(f"{p}.se", "shuffle units have no SE")
        stages.append(stage)
    if block == "shuffle" and stages[0].stride == 1 and stages[0].width != (stem.channels,):
        raise SpaceError(f"{where}.stages[0].width", f"a stride-1 shuffle stage keeps the stem width {stem.channels}")
    head_raw = data.get("head", {})
    norm_raw = data.get("norm", {})
    try:
        head = HeadSpec(**head_raw)
    except TypeError as exc:
        raise SpaceError(f"{where}.head", str(exc)) from exc
    try:
        norm = NormSpec(**norm_raw)
    except TypeError as exc:
        raise SpaceError(f"{where}.norm", str(exc)) from exc
    last = data.get("last_conv", {"channels": 0})
    if not isinstance(last, dict) or "channels" not in last:
        raise SpaceError(f"{where}.last_conv", f"expected a mapping like {{channels: 960, act: hardswish}}, got {last!r}")
    se_ratio = data.get("se_ratio", 0.25)
    if not isinstance(se_ratio, (int, float)) or not 0 < se_ratio <= 1:
        raise SpaceError(f"{where}.se_ratio", f"expected a number in (0, 1], got {se_ratio!r}")
    space = SearchSpace(
        name=name, block=block, stem=stem, stages=tuple(stages),
        resolution=_choices(data.get("resolution", 224), f"{where}.resolution", int, lambda v: v >= 16,
                            "integers >= 16"),
        activation=_choices(data.get("activation", "relu"), f"{where}.activation", str,
                            lambda v: v in ACTIVATIONS, f"one of {acts}"),
        se=_choices(data.get("se", False), f"{where}.se", bool, None, "true/false"),
        se_ratio=float(se_ratio), se_gate=data.get("se_gate", "hardsigmoid"), skip=data.get("skip", "auto"),
        last_conv=_choices(last["channels"], f"{where}.last_conv.channels", int, lambda v: v >= 0,
                           "integers >= 0 (0: none)"),
        last_conv_act=last.get("act", "hardswish"), head=head, norm=norm,
        family=data.get("family", ""), description=data.get("description", ""),
    )
    if block == "shuffle" and True in space.se:
        raise SpaceError(f"{where}.se", "shuffle units have no SE")
    # Build the widest and the narrowest corner once, so spec-level errors surface at load time.
    try:
        space.sample(_Corner(0))
        space.sample(_Corner(-1))
    except ValueError as exc:
        raise SpaceError(where, f"samples an invalid spec: {exc}") from exc
    return space


class _Corner:
    def __init__(self, index: int):
        self.index = index

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return list(choices)[self.index]


def load_space(path: str | Path) -> SearchSpace | SubnetSpace:
    """Read a space from a .yaml/.yml/.json file; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"search space file not found: {path}")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text())
        else:
            data = json.loads(path.read_text())
    except Exception as exc:
        raise SpaceError(str(path), f"cannot parse: {exc}") from exc
    return parse_space(data, where=str(path))


def list_spaces() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def get_space(name_or_path: str | Path | SearchSpace | SubnetSpace) -> SearchSpace | SubnetSpace:
    """A built-in space by name (``mbconv``, ``carve``, ``shuffle``) or a space file."""
    if isinstance(name_or_path, (SearchSpace, SubnetSpace)):
        return name_or_path
    text = str(name_or_path)
    builtin = BUILTIN_DIR / f"{text}.yaml"
    if builtin.is_file():
        return load_space(builtin)
    if Path(text).suffix in (".yaml", ".yml", ".json"):
        return load_space(text)
    raise KeyError(f"unknown search space {text!r}; built-in: {', '.join(list_spaces())}, or a .yaml/.json file")


__all__ = ["FixedParams", "RandomTrial", "SearchSpace", "SpaceError", "StageChoice", "SubnetSpace", "Suggester",
           "get_space", "list_spaces", "load_space", "parse_space"]
