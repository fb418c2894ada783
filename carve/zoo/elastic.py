"""The choices of a weight-sharing supernet, and which specs are sub-networks of it.

An ``ElasticSpace`` lists, per stage, the depths, widths, per-block depthwise kernels and
expansion ratios a sub-network may take (Once-for-All's elastic dimensions), the stem and last-conv
widths, and the input resolutions. ``largest()`` is the supernet itself. Every sampled sub-network
is an ordinary ``ArchSpec`` of the carve family's shape: inverted residuals with partial skips, SE
at fixed block positions, a final 1x1 conv and a pooled 1280-wide head. ``subnetwork_plan`` checks
that a spec (sampled or written by hand, e.g. ``carve_100``) fits inside a supernet and says which
supernet block each of its blocks uses.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from .spec import ArchSpec, BlockSpec, HeadSpec, NormSpec, SESpec, StageSpec, StemSpec, make_divisible
from .subnets import SubnetError

# choose(name, options) -> one of options: random.Random.choice, or an Optuna trial's suggest_categorical
Chooser = Callable[[str, tuple], Any]


@dataclass(frozen=True)
class ElasticStage:
    """One stage's choices. ``se``: whether the block at each position has SE (one entry per block
    of the deepest choice); ``expansion`` (1,) means the blocks have no expand conv."""

    depth: tuple[int, ...]
    width: tuple[int, ...]
    kernel: tuple[int, ...]
    expansion: tuple[float, ...]
    stride: int
    act: str
    se: tuple[bool, ...]


@dataclass(frozen=True)
class ElasticSpace:
    """Everything a sub-network may choose; specs it builds predict ``num_classes`` classes."""

    name: str
    stem: tuple[int, ...]
    stages: tuple[ElasticStage, ...]
    last_conv: tuple[int, ...]
    resolution: tuple[int, ...] = (160, 192, 224)
    head: int = 1280
    num_classes: int = 1000
    stem_act: str = "hardswish"
    last_act: str = "hardswish"
    se_ratio: float = 0.25
    dropout: float = 0.2
    norm: NormSpec = field(default_factory=NormSpec)

    def __post_init__(self) -> None:
        check_space(self)

    # -- choices ------------------------------------------------------------------------------
    def choices(self) -> list[tuple[str, tuple]]:
        """Every choice in a fixed order: (name, options); a spec and a resolution answer all of them."""
        out: list[tuple[str, tuple]] = [("resolution", self.resolution), ("stem", self.stem)]
        for si, st in enumerate(self.stages):
            out += [(f"s{si}.depth", st.depth), (f"s{si}.width", st.width)]
            for bi in range(max(st.depth)):
                out += [(f"s{si}.b{bi}.kernel", st.kernel), (f"s{si}.b{bi}.expansion", st.expansion)]
        return out + [("last_conv", self.last_conv)]

    def params(self, choose: Chooser | random.Random) -> dict[str, Any]:
        """One answer per choice: from ``choose(name, options)`` or a ``random.Random``."""
        if isinstance(choose, random.Random):
            rng = choose
            choose = lambda _name, options: rng.choice(options)
        return {name: choose(name, options) for name, options in self.choices()}

    def sample(self, rng: random.Random | int) -> ArchSpec:
        """A random sub-network (resolution: ``sample_resolution``, or ``params`` for both at once)."""
        return self.spec_of(self.params(rng if isinstance(rng, random.Random) else random.Random(rng)))

    def sample_resolution(self, rng: random.Random) -> int:
        return rng.choice(self.resolution)

    def largest(self) -> ArchSpec:
        return self.spec_of({name: max(options) for name, options in self.choices()}, "largest")

    def smallest(self) -> ArchSpec:
        return self.spec_of({name: min(options) for name, options in self.choices()}, "smallest")

    def spec_of(self, params: dict[str, Any], suffix: str | None = None) -> ArchSpec:
        """The sub-network a full set of answers describes (``choices`` names the keys)."""
        missing = [name for name, _ in self.choices() if name not in params]
        if missing:
            raise SubnetError(f"{self.name}: choices missing: {missing[:5]}")
        cin, stages = int(params["stem"]), []
        for si, st in enumerate(self.stages):
            blocks = []
            width = int(params[f"s{si}.width"])
            for bi in range(int(params[f"s{si}.depth"])):
                e = params[f"s{si}.b{bi}.expansion"]
                mid = cin if e == 1 else make_divisible(cin * e)
                se = SESpec(make_divisible(mid * self.se_ratio), "relu", "hardsigmoid") if st.se[bi] else None
                blocks.append(BlockSpec("ir", width, int(params[f"s{si}.b{bi}.kernel"]), st.stride if bi == 0 else 1,
                                        act=st.act, mid_channels=mid, se=se, skip="partial"))
                cin = width
            if si == len(self.stages) - 1:
                blocks.append(BlockSpec("conv", int(params["last_conv"]), 1, 1, act=self.last_act))
            stages.append(StageSpec(tuple(blocks)))
        spec = ArchSpec(name="", family=f"supernet_{self.name}", stem=StemSpec(int(params["stem"]), act=self.stem_act),
                        stages=tuple(stages), norm=self.norm,
                        head=HeadSpec(fc_channels=self.head, fc_act="hardswish", dropout=self.dropout,
                                      num_classes=self.num_classes))
        return spec.replace(name=f"{self.name}_{suffix or spec.hash()[:8]}")

    def size(self) -> int:
        """How many distinct sub-network answers there are (resolution included)."""
        n = len(self.resolution) * len(self.stem) * len(self.last_conv)
        for st in self.stages:
            n *= sum(len(st.width) * (len(st.kernel) * len(st.expansion)) ** d for d in st.depth)
        return n

    # -- plain data ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = [asdict(st) for st in self.stages]
        return _lists(data)

    def with_num_classes(self, num_classes: int) -> ElasticSpace:
        return replace(self, num_classes=int(num_classes))


def _lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


def space_from_dict(data: dict[str, Any], where: str = "supernet space") -> ElasticSpace:
    """An ``ElasticSpace`` from plain data (``to_dict``'s output); errors name the field."""
    if not isinstance(data, dict):
        raise SubnetError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = set(ElasticSpace.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise SubnetError(f"{where}.{unknown[0]}: unknown field; expected one of {sorted(known)}")
    try:
        stages = tuple(ElasticStage(**{k: tuple(v) if isinstance(v, list) else v for k, v in st.items()})
                       for st in data["stages"])
        rest = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k not in ("stages", "norm")}
        norm = NormSpec(**data["norm"]) if "norm" in data else NormSpec()
        return ElasticSpace(stages=stages, norm=norm, **rest)
    except (KeyError, TypeError) as exc:
        raise SubnetError(f"{where}: {exc}") from None


def check_space(space: ElasticSpace) -> None:
    """Raise ``SubnetError`` naming the field when a space cannot describe a weight-sharing supernet."""
    def need(cond: bool, where: str, msg: str) -> None:
        if not cond:
            raise SubnetError(f"{space.name}.{where}: {msg}")

    def positive(values: tuple, where: str) -> None:
        need(bool(values) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values),
             where, f"expected positive integers, got {values!r}")

    positive(space.stem, "stem")
    positive(space.last_conv, "last_conv")
    positive(space.resolution, "resolution")
    need(bool(space.stages), "stages", "expected at least one stage")
    widest_in = max(space.stem)
    for si, st in enumerate(space.stages):
        w = f"stages[{si}]"
        positive(st.depth, f"{w}.depth")
        positive(st.width, f"{w}.width")
        need(all(k % 2 == 1 for k in st.kernel) and bool(st.kernel), f"{w}.kernel",
             f"expected odd sizes, got {st.kernel!r}")
        need(st.expansion == (1,) or (bool(st.expansion) and all(e >= 2 for e in st.expansion)), f"{w}.expansion",
             f"expected (1,) (no expand conv) or ratios >= 2, got {st.expansion!r}")
        need(st.stride in (1, 2), f"{w}.stride", f"expected 1 or 2, got {st.stride!r}")
        need(len(st.se) == max(st.depth), f"{w}.se", f"expected one flag per block of the deepest choice "
                                                      f"({max(st.depth)}), got {len(st.se)}")
        # blocks whose input and output share channels (a skip) must share them whole in the largest network
        need(st.stride == 2 or widest_in == max(st.width), f"{w}.width",
             f"a stride-1 stage's widest choice must equal its input's ({widest_in}), got {max(st.width)}")
        widest_in = max(st.width)


def carve_space(num_classes: int = 1000) -> ElasticSpace:
    """The built-in supernet around the carve family: its largest sub-network is wider, deeper and
    more expanded than ``carve_125``, and ``carve_075``/``carve_100``/``carve_125`` are sub-networks of it."""
    relu, hs = "relu", "hardswish"
    return ElasticSpace(
        name="carve", stem=(16, 24), last_conv=(576, 768, 960), num_classes=num_classes,
        stages=(
            ElasticStage(depth=(1,), width=(16, 24), kernel=(3,), expansion=(1,), stride=1, act=relu, se=(False,)),
            ElasticStage(depth=(2, 3), width=(24, 32, 40), kernel=(3, 5), expansion=(3, 4, 6), stride=2, act=relu,
                         se=(False,) * 3),
            ElasticStage(depth=(2, 3), width=(40, 56, 72), kernel=(3, 5), expansion=(3, 4, 6), stride=2, act=relu,
                         se=(False,) * 3),
            ElasticStage(depth=(2, 3, 4), width=(64, 88, 112, 144), kernel=(3, 5), expansion=(3, 4, 6), stride=2,
                         act=hs, se=(False, False, True, True)),
            ElasticStage(depth=(2, 3), width=(112, 144, 184), kernel=(3, 5), expansion=(3, 4, 6), stride=2, act=hs,
                         se=(True,) * 3),
        ))


def carve_compact_space(num_classes: int = 1000) -> ElasticSpace:
    """A tighter supernet around the carve family, cheap enough to train on a CPU: its largest
    sub-network just contains ``carve_125`` (5x5 kernels everywhere, a few more expanded channels),
    its smallest is under half of ``carve_075``, and ``carve_075``/``carve_100``/``carve_125`` are
    sub-networks of it."""
    relu, hs = "relu", "hardswish"
    return ElasticSpace(
        name="carve_compact", stem=(16, 24), last_conv=(576, 768, 960), num_classes=num_classes,
        stages=(
            ElasticStage(depth=(1,), width=(16, 24), kernel=(3,), expansion=(1,), stride=1, act=relu, se=(False,)),
            ElasticStage(depth=(1, 2), width=(24, 32, 40), kernel=(3, 5), expansion=(3, 4), stride=2, act=relu,
                         se=(False,) * 2),
            ElasticStage(depth=(1, 2), width=(40, 56, 72), kernel=(3, 5), expansion=(3, 4), stride=2, act=relu,
                         se=(False,) * 2),
            ElasticStage(depth=(2, 3), width=(64, 88, 112, 144), kernel=(3, 5), expansion=(3, 4), stride=2,
                         act=hs, se=(False, False, True)),
            ElasticStage(depth=(1, 2), width=(112, 144, 184), kernel=(3, 5), expansion=(3, 4, 5), stride=2, act=hs,
                         se=(True,) * 2),
        ))


SPACES = {"carve": carve_space, "carve_compact": carve_compact_space}


def elastic_space(name_or_space: str | ElasticSpace | dict, num_classes: int | None = None) -> ElasticSpace:
    """A built-in space by name (``carve``), a space, or its plain data; ``num_classes`` overrides."""
    if isinstance(name_or_space, ElasticSpace):
        space = name_or_space
    elif isinstance(name_or_space, dict):
        space = space_from_dict(name_or_space)
    elif name_or_space in SPACES:
        space = SPACES[name_or_space]()
    else:
        raise KeyError(f"unknown supernet space {name_or_space!r}; built-in: {', '.join(SPACES)}")
    return space.with_num_classes(num_classes) if num_classes is not None else space


# -- which specs are sub-networks -------------------------------------------------------------------

def subnetwork_plan(largest: ArchSpec, spec: ArchSpec) -> list[tuple[int, int]]:
    """For each block of ``spec``, the (stage, block) of ``largest`` whose weights it uses.

    ``spec`` must have ``largest``'s stages, each with at most as many inverted residuals (its
    first ones) and the same trailing blocks; every width, kernel and SE width at most the
    supernet's; the same strides, activations, SE placement, norm and head kind; and an expand
    conv exactly where the supernet's block has one. Otherwise a ``SubnetError`` names the block.
    """
    def fail(where: str, msg: str) -> None:
        raise SubnetError(f"{spec.name}: {where}: {msg} (not a sub-network of {largest.name})")

    if len(spec.stages) != len(largest.stages):
        fail("stages", f"{len(spec.stages)} stages, the supernet has {len(largest.stages)}")
    for attr in ("norm", "padding", "in_channels", "pooling"):
        if getattr(spec, attr) != getattr(largest, attr):
            fail(attr, f"{getattr(spec, attr)!r} differs from the supernet's {getattr(largest, attr)!r}")
    st, big = spec.stem, largest.stem
    if (st.kernel, st.stride, st.act, st.pool, st.kind, st.pad) != (big.kernel, big.stride, big.act, big.pool,
                                                                     big.kind, big.pad) or st.channels > big.channels:
        fail("stem", f"{st} does not fit in {big}")
    h, hb = spec.head, largest.head
    wider = h.conv_channels > hb.conv_channels or h.fc_channels > hb.fc_channels
    layers = (bool(h.conv_channels), bool(h.fc_channels), h.conv_act, h.fc_act, h.fc_norm, h.classifier)
    if wider or layers != (bool(hb.conv_channels), bool(hb.fc_channels), hb.conv_act, hb.fc_act, hb.fc_norm,
                           hb.classifier):
        fail("head", f"{h} does not fit in {hb}")
    plan: list[tuple[int, int]] = []
    cin, big_cin = spec.stem.channels, largest.stem.channels
    for si, (stage, big_stage) in enumerate(zip(spec.stages, largest.stages)):
        ours, theirs = _split(stage.blocks), _split(big_stage.blocks)
        if len(ours[0]) > len(theirs[0]) or len(ours[1]) != len(theirs[1]) or not ours[0] and theirs[0]:
            fail(f"stages[{si}]", f"{len(ours[0])} inverted residuals + {len(ours[1])} other blocks; the supernet has "
                                  f"{len(theirs[0])} (at least one needed) + {len(theirs[1])}")
        pairs = list(zip(range(len(ours[0])), range(len(ours[0])))) + [
            (len(ours[0]) + j, len(theirs[0]) + j) for j in range(len(ours[1]))]
        for bi, bj in pairs:
            b, bb = stage.blocks[bi], big_stage.blocks[bj]
            big_in = big_cin if bj == 0 else big_stage.blocks[bj - 1].out_channels
            _check_block(b, bb, cin, big_in, f"stages[{si}].blocks[{bi}]", fail)
            plan.append((si, bj))
            cin = b.out_channels
        big_cin = big_stage.blocks[-1].out_channels
    return plan


def _split(blocks: tuple[BlockSpec, ...]) -> tuple[list[BlockSpec], list[BlockSpec]]:
    """Leading inverted residuals, then the rest."""
    n = 0
    while n < len(blocks) and blocks[n].kind == "ir":
        n += 1
    return list(blocks[:n]), list(blocks[n:])


def _check_block(b: BlockSpec, bb: BlockSpec, cin: int, big_in: int, where: str, fail: Callable) -> None:
    same = ("kind", "stride", "act", "dw_act", "se_before_dw_act", "pw_act", "skip", "start_kernel", "end_kernel",
            "groups", "first_groups", "branches")
    for attr in same:
        if getattr(b, attr) != getattr(bb, attr):
            fail(where, f"{attr} {getattr(b, attr)!r}, the supernet's block has {getattr(bb, attr)!r}")
    if b.out_channels > bb.out_channels or cin > big_in:
        fail(where, f"{cin} -> {b.out_channels} channels, the supernet's block has {big_in} -> {bb.out_channels}")
    if b.kernel > bb.kernel or b.kernel % 2 != bb.kernel % 2:
        fail(where, f"kernel {b.kernel} does not sit in the centre of the supernet's {bb.kernel}")
    if b.kind == "ir":
        mid, big_mid = b.mid_channels or cin, bb.mid_channels or big_in
        if mid > big_mid or (mid != cin) != (big_mid != big_in):
            fail(where, f"{mid} expanded channels from {cin} (the supernet's block: {big_mid} from {big_in}; an "
                        "expand conv is needed exactly where the supernet has one)")
        if (b.se is None) != (bb.se is None):
            fail(where, "SE where the supernet's block has none, or none where it has one")
        if b.se is not None and (b.se.channels > bb.se.channels or (b.se.act, b.se.gate, b.se.norm)
                                 != (bb.se.act, bb.se.gate, bb.se.norm)):
            fail(where, f"SE {b.se} does not fit in {bb.se}")
