"""Reading search spaces from plain data and files; errors name the field and what was expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from carve.zoo.spec import ACTIVATIONS, HeadSpec, NormSpec, StemSpec

from .choices import BLOCKS, SearchSpace, SpaceError, StageChoice
from .subnets import SubnetSpace, parse_subnet_space
from .supernets import SupernetSpace, parse_supernet_space

_STAGE_KEYS = ("depth", "width", "stride", "kernel", "start_kernel", "expansion", "act", "se")
_TOP_KEYS = ("name", "description", "family", "block", "resolution", "activation", "se", "se_ratio", "se_gate",
             "skip", "stem", "stages", "last_conv", "head", "norm")


def _choices(value: Any, path: str, kind: type | tuple[type, ...], check=None, what: str = "") -> tuple:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SpaceError(path, "expected a value or a non-empty list of choices, got []")
    for v in values:
        ok = isinstance(v, kind) and not (isinstance(v, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)))
        if not ok or (check is not None and not check(v)):
            raise SpaceError(path, f"expected {what}, got {v!r}")
    return tuple(values)


def _kernel_check(zero_allowed: bool) -> Any:
    return lambda v: (v == 0 and zero_allowed) or (v > 0 and v % 2 == 1)


def _pos_int(v: Any) -> bool:
    return v > 0


def parse_space(data: Any, where: str = "space") -> SearchSpace | SubnetSpace | SupernetSpace:
    """Build a :class:`SearchSpace` (for ``kind: subnets``, a :class:`SubnetSpace`; for ``kind: supernet``, a
    :class:`SupernetSpace`) from plain data; errors name the field (``stages[2].kernel``)."""
    if not isinstance(data, dict):
        raise SpaceError(where, f"expected a mapping, got {type(data).__name__}")
    if data.get("kind") == "subnets":
        return parse_subnet_space(data, where)
    if data.get("kind") == "supernet":
        return parse_supernet_space(data, where)
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
        even, uib = block == "shuffle", block == "uib"
        if "start_kernel" in raw and not uib:
            raise SpaceError(f"{p}.start_kernel", f"only uib spaces choose a start kernel, this one has {block!r} blocks")
        stage = StageChoice(
            depth=_choices(raw["depth"], f"{p}.depth", int, _pos_int, "positive integers"),
            width=_choices(raw["width"], f"{p}.width", int, (lambda v: v > 0 and v % 2 == 0) if even else _pos_int,
                           "positive even integers (shuffle units split channels)" if even else "positive integers"),
            stride=stride,
            kernel=_choices(raw.get("kernel", 3), f"{p}.kernel", int, _kernel_check(uib),
                            "0 (none) or odd positive integers" if uib else "odd positive integers"),
            start_kernel=_choices(raw.get("start_kernel", 0), f"{p}.start_kernel", int, _kernel_check(True),
                                  "0 (none) or odd positive integers"),
            expansion=_choices(raw.get("expansion", 1), f"{p}.expansion", (int, float), lambda v: v >= 1,
                               "numbers >= 1"),
            act=None if "act" not in raw else _choices(raw["act"], f"{p}.act", str, lambda v: v in ACTIVATIONS,
                                                       f"one of {acts}"),
            se=None if "se" not in raw else _choices(raw["se"], f"{p}.se", bool, None, "true/false"),
        )
        if uib and stride == 2 and not any(stage.kernel):
            raise SpaceError(f"{p}.kernel", "a stride-2 uib stage needs a middle depthwise kernel choice other than 0 "
                                            "to carry the stride")
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


