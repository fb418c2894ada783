"""Reading specs from plain data and files, and validating every field.

Errors name the field path (``stages[1].blocks[0].kernel``) and the bad value; on load,
conveniences are resolved (``expansion`` -> ``mid_channels``, SE ``ratio`` -> ``channels``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from carve.files import read_text

from .spec import (ACTIVATIONS, BLOCK_KINDS, CLASSIFIERS, GATES, NORMS, PADDINGS, POOLINGS, SKIPS, SPEC_VERSION,
                   STEMS, ArchSpec, BlockSpec, HeadSpec, NormSpec, SESpec, SpecError, StageSpec, StemSpec,
                   make_divisible)

# Kinds with an expanded (or squeezed) middle width, and those where it defaults to the input width.
MID_KINDS = ("ir", "uib", "fused", "fire", "shuffle_v1")
MID_DEFAULTS_TO_INPUT = ("ir", "uib", "fused")
SE_KINDS = ("ds", "ir", "uib", "fused", "mobileone")


def load_spec(path: str | Path) -> ArchSpec:
    """Read a spec from a .json or .yaml file; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spec file not found: {path}")
    text = read_text(path)
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # parse errors from either library
        raise SpecError(str(path), f"cannot parse: {exc}") from exc
    if isinstance(data, dict) and "spec" in data and "stages" not in data:
        data = data["spec"]  # a checkpoint-style wrapper {"spec": {...}, ...}
    try:
        return parse_spec(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc.path}", str(exc).split(": ", 1)[1]) from exc


def parse_spec(data: Any) -> ArchSpec:
    """Build and validate an ArchSpec from plain data (as read from JSON/YAML)."""
    if not isinstance(data, dict):
        raise SpecError("spec", f"expected a mapping, got {type(data).__name__}")
    data = copy.deepcopy(data)
    _known(data, ArchSpec, "spec")
    stem = _parse_simple(StemSpec, _require(data, "stem", "spec"), "stem")
    raw_stages = _require(data, "stages", "spec")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise SpecError("stages", f"expected a non-empty list, got {raw_stages!r}")
    stages = []
    cin = stem.channels
    for si, raw_stage in enumerate(raw_stages):
        where = f"stages[{si}]"
        if isinstance(raw_stage, dict):
            _known(raw_stage, StageSpec, where)
            raw_blocks = raw_stage.get("blocks")
        else:
            raw_blocks = raw_stage
        if not isinstance(raw_blocks, list) or not raw_blocks:
            raise SpecError(f"{where}.blocks", f"expected a non-empty list, got {raw_blocks!r}")
        blocks = []
        for bi, raw in enumerate(raw_blocks):
            block = _parse_block(raw, cin, f"{where}.blocks[{bi}]")
            blocks.append(block)
            cin = block.out_channels
        stages.append(StageSpec(tuple(blocks)))
    head = _parse_simple(HeadSpec, data.get("head", {}), "head")
    norm = _parse_simple(NormSpec, data.get("norm", {}), "norm")
    spec = ArchSpec(
        name=str(data.get("name", "custom")),
        family=str(data.get("family", "custom")),
        stem=stem,
        stages=tuple(stages),
        head=head,
        norm=norm,
        padding=data.get("padding", "symmetric"),
        in_channels=data.get("in_channels", 3),
        drop_path_rate=data.get("drop_path_rate", 0.0),
        version=data.get("version", SPEC_VERSION),
        pooling=data.get("pooling", "pad"),
    )
    validate(spec)
    return spec


def _require(data: dict, key: str, where: str) -> Any:
    if key not in data:
        raise SpecError(f"{where}.{key}" if where != "spec" else key, "missing required field")
    return data[key]


def _known(data: dict, cls: type, where: str, extra: tuple[str, ...] = ()) -> None:
    names = {f.name for f in fields(cls)} | set(extra)
    for key in data:
        if key not in names:
            raise SpecError(f"{where}.{key}", f"unknown field; expected one of {sorted(names)}")


def _parse_simple(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise SpecError(where, f"expected a mapping, got {raw!r}")
    _known(raw, cls, where)
    try:
        return cls(**raw)
    except TypeError as exc:
        raise SpecError(where, str(exc)) from exc


def _parse_block(raw: Any, cin: int, where: str) -> BlockSpec:
    if isinstance(raw, BlockSpec):
        return raw
    if not isinstance(raw, dict):
        raise SpecError(where, f"expected a mapping, got {raw!r}")
    raw = dict(raw)
    _known(raw, BlockSpec, where, extra=("expansion",))
    kind = raw.get("kind")
    if kind not in BLOCK_KINDS:
        raise SpecError(f"{where}.kind", f"expected one of {list(BLOCK_KINDS)}, got unknown block kind {kind!r}")
    expansion = raw.pop("expansion", None)
    if expansion is not None:
        if raw.get("mid_channels") is not None:
            raise SpecError(f"{where}.expansion", "give either expansion or mid_channels, not both")
        if not isinstance(expansion, (int, float)) or expansion <= 0:
            raise SpecError(f"{where}.expansion", f"must be a positive number, got {expansion!r}")
        raw["mid_channels"] = cin if expansion == 1 else make_divisible(cin * expansion)
    if kind in MID_DEFAULTS_TO_INPUT and raw.get("mid_channels") is None:
        raw["mid_channels"] = cin
    se = raw.get("se")
    if isinstance(se, dict):
        se = dict(se)
        _known(se, SESpec, f"{where}.se", extra=("ratio",))
        ratio = se.pop("ratio", None)
        if ratio is not None:
            if not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
                raise SpecError(f"{where}.se.ratio", f"must be in (0, 1], got {ratio!r}")
            base = raw.get("out_channels") if kind == "mobileone" else raw.get("mid_channels") or cin
            if not isinstance(base, int):
                raise SpecError(f"{where}.out_channels", f"must be a positive integer, got {base!r}")
            se["channels"] = max(1, make_divisible(base * ratio, 8))
        raw["se"] = _parse_simple(SESpec, se, f"{where}.se")
    elif se is not None and not isinstance(se, SESpec):
        raise SpecError(f"{where}.se", f"expected a mapping or null, got {se!r}")
    try:
        return BlockSpec(**raw)
    except TypeError as exc:
        raise SpecError(where, str(exc)) from exc


MAX_CHANNELS = 1 << 16  # widest layer accepted; lightweight nets stay below 4096
MAX_CLASSES = 1 << 20


def check_input_size(spec: ArchSpec, size: int, what: str = "input size") -> ArchSpec:
    """Refuse a spec whose strides would shrink a ``size`` px input below 1x1: a ``SpecError`` names
    the first stride applied to a map that is already 1x1 (``what`` names the size in the message)."""
    _check(isinstance(size, int) and not isinstance(size, bool) and size >= 1, what,
           f"must be a positive integer, got {size!r}")
    side, reduction = size, 1
    strides = [("stem.stride", spec.stem.stride)] + ([("stem.pool", 2)] if spec.stem.pool else [])
    strides += [(f"stages[{si}].blocks[{bi}].stride", b.stride)
                for si, stage in enumerate(spec.stages) for bi, b in enumerate(stage.blocks)]
    for path, stride in strides:
        if stride == 1:
            continue
        _check(side > 1, path, f"at {what} {size} the feature map is already 1x1 here (reduced {reduction}x); "
                               f"this stride would take it below 1x1: use a larger {what} or fewer strides")
        side, reduction = -(-side // stride), reduction * stride  # every conv and pool rounds up
    return spec


def _check(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise SpecError(path, message)


def _positive_int(value: Any, path: str) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value > 0, path,
           f"must be a positive integer, got {value!r}")


def _channels(value: Any, path: str, low: int = 1, high: int = MAX_CHANNELS) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= low, path,
           f"must be a positive integer, got {value!r}" if low == 1 else f"must be an integer >= {low}, got {value!r}")
    _check(value <= high, path, f"must be at most {high} (a sane maximum), got {value!r}")


def _kernel(value: Any, path: str) -> None:
    _positive_int(value, path)
    _check(value % 2 == 1, path, f"must be odd, got {value!r}")


def _act(value: Any, path: str, allowed: tuple[str, ...] = ACTIVATIONS) -> None:
    _check(value in allowed, path, f"unknown activation {value!r}; expected one of {list(allowed)}")


def validate(spec: ArchSpec) -> ArchSpec:
    """Check every field; raise SpecError naming the first bad one."""
    _check(spec.version == SPEC_VERSION, "version", f"unsupported spec version {spec.version!r}")
    _check(spec.padding in PADDINGS, "padding", f"must be one of {list(PADDINGS)}, got {spec.padding!r}")
    _check(spec.pooling in POOLINGS, "pooling", f"must be one of {list(POOLINGS)}, got {spec.pooling!r}")
    _channels(spec.in_channels, "in_channels")
    _check(isinstance(spec.drop_path_rate, (int, float)) and 0 <= spec.drop_path_rate < 1,
           "drop_path_rate", f"must be in [0, 1), got {spec.drop_path_rate!r}")
    _check(spec.norm.eps > 0, "norm.eps", f"must be positive, got {spec.norm.eps!r}")
    _check(0 < spec.norm.momentum <= 1, "norm.momentum", f"must be in (0, 1], got {spec.norm.momentum!r}")
    _check(spec.norm.kind in NORMS, "norm.kind", f"must be one of {list(NORMS)}, got {spec.norm.kind!r}")
    st = spec.stem
    _channels(st.channels, "stem.channels")
    _kernel(st.kernel, "stem.kernel")
    _check(st.stride in (1, 2), "stem.stride", f"must be 1 or 2, got {st.stride!r}")
    _act(st.act, "stem.act")
    _check(isinstance(st.pool, bool), "stem.pool", f"must be true or false, got {st.pool!r}")
    _check(st.kind in STEMS, "stem.kind", f"must be one of {list(STEMS)}, got {st.kind!r}")
    _check(isinstance(st.pad, bool), "stem.pad", f"must be true or false, got {st.pad!r}")
    _check(st.pad or st.kind == "conv", "stem.pad", "only a conv stem can be unpadded")
    _check(len(spec.stages) > 0, "stages", "must hold at least one stage")
    cin = st.channels
    for si, stage in enumerate(spec.stages):
        _check(len(stage.blocks) > 0, f"stages[{si}].blocks", "must hold at least one block")
        for bi, b in enumerate(stage.blocks):
            _validate_block(b, cin, f"stages[{si}].blocks[{bi}]")
            cin = b.out_channels
    if spec.padding == "same":
        _check(st.kind != "mobileone" and all(b.kind != "mobileone" for b in spec.blocks), "padding",
               "mobileone blocks sum k x k and 1x1 branches into one conv, which needs symmetric padding, got 'same'")
    h = spec.head
    for name in ("conv_channels", "fc_channels", "num_classes"):
        _channels(getattr(h, name), f"head.{name}", 0, MAX_CLASSES if name == "num_classes" else MAX_CHANNELS)
    _act(h.conv_act, "head.conv_act")
    _act(h.fc_act, "head.fc_act")
    _check(0 <= h.dropout < 1, "head.dropout", f"must be in [0, 1), got {h.dropout!r}")
    _check(isinstance(h.fc_norm, bool), "head.fc_norm", f"must be true or false, got {h.fc_norm!r}")
    _check(not h.fc_norm or h.fc_channels > 0, "head.fc_norm", "needs fc_channels > 0")
    _check(h.classifier in CLASSIFIERS, "head.classifier", f"must be one of {list(CLASSIFIERS)}, got {h.classifier!r}")
    if h.classifier == "conv":
        _check(h.fc_channels == 0, "head.classifier",
               f"a conv classifier runs before the pool, so there is no fc layer; got fc_channels {h.fc_channels}")
    return spec


def _validate_block(b: BlockSpec, cin: int, where: str) -> None:
    _check(b.kind in BLOCK_KINDS, f"{where}.kind", f"unknown block kind {b.kind!r}; expected one of {list(BLOCK_KINDS)}")
    _channels(b.out_channels, f"{where}.out_channels")
    if b.kind == "uib":
        _optional_kernel(b.kernel, f"{where}.kernel")
    else:
        _kernel(b.kernel, f"{where}.kernel")
    _check(b.stride in (1, 2), f"{where}.stride", f"must be 1 or 2, got {b.stride!r}")
    _act(b.act, f"{where}.act")
    if b.dw_act is not None:
        _act(b.dw_act, f"{where}.dw_act")
    _check(b.skip in SKIPS, f"{where}.skip", f"must be one of {list(SKIPS)}, got {b.skip!r}")
    if b.kind in MID_KINDS:
        _channels(b.mid_channels, f"{where}.mid_channels")
    elif b.mid_channels is not None:
        raise SpecError(f"{where}.mid_channels", f"only {', '.join(MID_KINDS)} blocks have mid_channels, "
                                                 f"got {b.mid_channels!r}")
    _only(b, "start_kernel", 0, ("uib",), where)
    _only(b, "end_kernel", 0, ("uib",), where)
    _only(b, "groups", 1, ("mobileone", "shuffle_v1"), where)
    _only(b, "first_groups", 0, ("shuffle_v1",), where)
    _only(b, "branches", 1, ("mobileone",), where)
    if b.se is not None:
        _check(b.kind in SE_KINDS, f"{where}.se", f"SE is supported on {', '.join(SE_KINDS)} blocks, not {b.kind!r}")
        _channels(b.se.channels, f"{where}.se.channels")
        base = {"ds": cin, "mobileone": b.out_channels}.get(b.kind, b.mid_channels)
        _check(b.se.channels <= base, f"{where}.se.channels",
               f"SE ratio {b.se.channels}/{base} is outside (0, 1]")
        _act(b.se.act, f"{where}.se.act")
        _check(b.se.gate in GATES, f"{where}.se.gate", f"must be one of {list(GATES)}, got {b.se.gate!r}")
    if b.kind == "shuffle":
        _check(b.out_channels % 2 == 0, f"{where}.out_channels",
               f"a shuffle unit needs an even width, got {b.out_channels}")
        if b.stride == 1:
            _check(cin == b.out_channels, f"{where}.out_channels",
                   f"a stride-1 shuffle unit keeps its width {cin}, got {b.out_channels}")
    elif b.kind == "uib":
        _optional_kernel(b.start_kernel, f"{where}.start_kernel")
        _optional_kernel(b.end_kernel, f"{where}.end_kernel")
        _check(b.stride == 1 or b.kernel or b.start_kernel or b.end_kernel, f"{where}.stride",
               "a stride-2 uib block needs a depthwise conv (kernel, start_kernel or end_kernel) to carry it")
    elif b.kind == "fire":
        _check(b.out_channels % 2 == 0, f"{where}.out_channels",
               f"a fire module concatenates two equal expand convs, so its width must be even, got {b.out_channels}")
    elif b.kind == "mobileone":
        _groups(b.groups, cin, b.out_channels, f"{where}.groups")
        _positive_int(b.branches, f"{where}.branches")
    elif b.kind == "shuffle_v1":
        _validate_shuffle_v1(b, cin, where)


def _only(b: BlockSpec, name: str, default: object, kinds: tuple[str, ...], where: str) -> None:
    value = getattr(b, name)
    _check(value == default or b.kind in kinds, f"{where}.{name}",
           f"only {', '.join(kinds)} blocks have {name}, got {value!r} on a {b.kind!r} block")


def _optional_kernel(value: object, path: str) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= 0 and (value == 0 or value % 2 == 1),
           path, f"must be 0 (none) or an odd positive integer, got {value!r}")


def _groups(value: object, cin: int, cout: int, path: str) -> None:
    _positive_int(value, path)
    _check(cin % value == 0 and cout % value == 0, path,
           f"{value} groups must divide the input width {cin} and the output width {cout}")


def _validate_shuffle_v1(b: BlockSpec, cin: int, where: str) -> None:
    _positive_int(b.groups, f"{where}.groups")
    branch = b.out_channels - cin if b.stride == 2 else b.out_channels
    if b.stride == 1:
        _check(cin == b.out_channels, f"{where}.out_channels",
               f"a stride-1 shuffle_v1 unit adds its input, so it keeps its width {cin}, got {b.out_channels}")
    else:
        _check(branch > 0, f"{where}.out_channels",
               f"a stride-2 shuffle_v1 unit concatenates its input ({cin}), so it must be wider, got {b.out_channels}")
    first = b.first_groups or b.groups
    _check(isinstance(b.first_groups, int) and b.first_groups >= 0, f"{where}.first_groups",
           f"must be an integer >= 0 (0: groups), got {b.first_groups!r}")
    _check(cin % first == 0 and b.mid_channels % first == 0, f"{where}.first_groups",
           f"{first} groups must divide the input width {cin} and mid_channels {b.mid_channels}")
    _check(b.mid_channels % b.groups == 0 and branch % b.groups == 0, f"{where}.groups",
           f"{b.groups} groups must divide mid_channels {b.mid_channels} and the branch width {branch}")
