"""Channel tracing over an ArchSpec: which channels each weighted layer reads and writes.

Every channel gets a label ``(group, index)``; a group is the set of channels one layer creates
(a conv's outputs). Residual additions pass labels through (the block's output carries its
input's labels, ReXNet/carve partial skips add a new group after them), depthwise convs map labels
one to one, and ShuffleNet units split, concatenate and shuffle label lists exactly as the module
does with tensors. Walking the same spec with a selection of labels per group gives the channel
lists of the pruned network, from which its spec and sliced weights follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from .residual import has_skip as _has_skip
from .spec import ArchSpec, BlockSpec, StageSpec

Label = tuple[str, int]
NewFn = Callable[[str, int], list[Label]]


@dataclass
class Layer:
    """One weighted module: its kind (conv, dw, bn, linear) and the labels of its inputs/outputs."""

    name: str
    kind: str
    inp: list[Label] | None
    out: list[Label]


@dataclass
class BlockWidths:
    out: int
    mid: int | None = None
    se: int | None = None


@dataclass
class Trace:
    """Layers by module name, group sizes, and the widths the walk produced."""

    layers: dict[str, Layer] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    stem: int = 0
    blocks: list[BlockWidths] = field(default_factory=list)
    head_conv: int = 0
    head_fc: int = 0
    # expand-conv groups with the input labels they must not equal in width (IR without expand conv
    # is a different module tree)
    expand_inputs: dict[str, list[Label]] = field(default_factory=dict)
    # ShuffleNet runs: list of (first block index, number of units)
    shuffle_runs: list[tuple[int, int]] = field(default_factory=list)

    def add(self, name: str, kind: str, inp: list[Label] | None, out: list[Label]) -> None:
        self.layers[name] = Layer(name, kind, inp, list(out))

    def cna(self, prefix: str, inp: list[Label], out: list[Label], dw: bool = False) -> list[Label]:
        self.add(f"{prefix}.conv", "dw" if dw else "conv", inp, out)
        self.add(f"{prefix}.bn", "bn", None, out)
        return out


def shuffle_labels(labels: list[Label]) -> list[Label]:
    """Channel shuffle with 2 groups, applied to a label list."""
    h = len(labels) // 2
    return [v for pair in zip(labels[:h], labels[h:]) for v in pair]


def identity_labels(gid: str, n: int) -> list[Label]:
    return [(gid, i) for i in range(n)]


# Block kinds whose channels are not traced (yet): grouped convs tie channels across groups, Fire's
# bypass adds into a concatenation, MobileOne's branches must keep one shape to re-parameterise.
UNTRACED_KINDS = {"fire": "Fire modules", "mobileone": "MobileOne blocks", "shuffle_v1": "ShuffleNetV1 units"}


def check_prunable(spec: ArchSpec) -> None:
    """Raise ValueError naming what in ``spec`` channel pruning does not handle."""
    if spec.norm.kind != "batch":
        raise ValueError(f"spec.norm.kind: {spec.norm.kind!r}: pruning ranks and slices channels through their "
                         "BatchNorms; a spec without BatchNorm (SqueezeNet) cannot be pruned")
    if spec.stem.kind != "conv":
        raise ValueError(f"stem.kind: a {spec.stem.kind!r} stem cannot be pruned")
    for si, stage in enumerate(spec.stages):
        for bi, b in enumerate(stage.blocks):
            if b.kind in UNTRACED_KINDS:
                raise ValueError(f"stages[{si}].blocks[{bi}].kind: {b.kind!r}: channel pruning does not handle "
                                 f"{UNTRACED_KINDS[b.kind]}")


def walk(spec: ArchSpec, new: NewFn = identity_labels) -> Trace:
    """Trace ``spec``; ``new(group, original_size)`` gives the labels each new group produces."""
    check_prunable(spec)
    t = Trace()

    def make(gid: str, n: int) -> list[Label]:
        t.groups[gid] = n
        return new(gid, n)

    x = [("input", i) for i in range(spec.in_channels)]
    x = t.cna("stem", x, make("stem", spec.stem.channels))
    t.stem = len(x)
    cins = spec.block_inputs()
    idx, run_start = 0, None
    for si, stage in enumerate(spec.stages):
        for bi, b in enumerate(stage.blocks):
            p = f"blocks.{si}.{bi}"
            if b.kind == "shuffle":
                if b.stride == 2:
                    run_start = idx
                    t.shuffle_runs.append((idx, 0))
                elif run_start is None:
                    raise ValueError(f"{p}: a stride-1 shuffle unit must follow a stride-2 one to be pruned")
                start, n = t.shuffle_runs[-1]
                t.shuffle_runs[-1] = (start, n + 1)
                x = _shuffle(t, p, b, x, make)
            else:
                run_start = None
                x = _block(t, p, b, cins[idx], x, make)
            idx += 1
    h = spec.head
    if h.conv_channels:
        x = t.cna("head_conv", x, make("head_conv", h.conv_channels))
        t.head_conv = len(x)
    if h.fc_channels and h.fc_norm:  # MobileNetV4: a 1x1 conv-BN on the pooled vector
        x = t.cna("head_fc", x, make("head_fc", h.fc_channels))
        t.head_fc = len(x)
    elif h.fc_channels:
        out = make("head_fc", h.fc_channels)
        t.add("head_fc.0", "linear", x, out)
        x, t.head_fc = out, len(out)
    if h.num_classes:
        t.add("classifier", "linear", x, [("classes", i) for i in range(h.num_classes)])
    return t


def _se(t: Trace, p: str, b: BlockSpec, x: list[Label], make: Callable) -> int | None:
    if b.se is None:
        return None
    r = make(f"{p}.se", b.se.channels)
    t.add(f"{p}.se.fc1", "conv", x, r)
    if b.se.norm:
        t.add(f"{p}.se.bn", "bn", None, r)
    t.add(f"{p}.se.fc2", "conv", r, x)
    return len(r)


def _out_labels(p: str, b: BlockSpec, cin: int, x: list[Label], make: Callable) -> list[Label]:
    if not _has_skip(b, cin):
        return make(f"{p}.out", b.out_channels)
    if cin == b.out_channels:
        return list(x)
    return list(x) + make(f"{p}.out", b.out_channels - cin)


def _block(t: Trace, p: str, b: BlockSpec, cin: int, x: list[Label], make: Callable) -> list[Label]:
    if b.kind == "conv":
        y = t.cna(p, x, make(f"{p}.out", b.out_channels))
        t.blocks.append(BlockWidths(len(y)))
        return y
    if b.kind == "ds":
        t.cna(f"{p}.conv_dw", x, x, dw=True)
        se = _se(t, p, b, x, make)
        y = _out_labels(p, b, cin, x, make)
        t.cna(f"{p}.conv_pw", x, y)
        t.blocks.append(BlockWidths(len(y), se=se))
        return y
    if b.kind in ("uib", "fused"):
        return _bottleneck(t, p, b, cin, x, make)
    if b.mid_channels != cin:
        m = t.cna(f"{p}.conv_pw", x, make(f"{p}.mid", b.mid_channels))
        t.expand_inputs[f"{p}.mid"] = list(x)
    else:
        m = x
    t.cna(f"{p}.conv_dw", m, m, dw=True)
    se = _se(t, p, b, m, make)
    y = _out_labels(p, b, cin, x, make)
    t.cna(f"{p}.conv_pwl", m, y)
    t.blocks.append(BlockWidths(len(y), mid=len(m), se=se))
    return y


def _bottleneck(t: Trace, p: str, b: BlockSpec, cin: int, x: list[Label], make: Callable) -> list[Label]:
    """UIB ([dw start], expand, [dw mid], [SE], project, [dw end]) and fused-MBConv (k x k expand,
    [SE], project); both always keep their expand conv, so any mid width is valid."""
    if b.kind == "uib":
        if b.start_kernel:
            t.cna(f"{p}.dw_start", x, x, dw=True)
        m = t.cna(f"{p}.pw_exp", x, make(f"{p}.mid", b.mid_channels))
        if b.kernel:
            t.cna(f"{p}.dw_mid", m, m, dw=True)
    else:
        m = t.cna(f"{p}.conv_exp", x, make(f"{p}.mid", b.mid_channels))
    se = _se(t, p, b, m, make)
    y = _out_labels(p, b, cin, x, make)
    t.cna(f"{p}.pw_proj" if b.kind == "uib" else f"{p}.conv_pwl", m, y)
    if b.kind == "uib" and b.end_kernel:
        t.cna(f"{p}.dw_end", y, y, dw=True)
    t.blocks.append(BlockWidths(len(y), mid=len(m), se=se))
    return y


def _shuffle(t: Trace, p: str, b: BlockSpec, x: list[Label], make: Callable) -> list[Label]:
    half = b.out_channels // 2
    if b.stride == 2:
        t.cna(f"{p}.branch1.0", x, x, dw=True)
        a = t.cna(f"{p}.branch1.1", x, make(f"{p}.A", half))
        x1, x2 = a, x
    else:
        h = len(x) // 2
        x1, x2 = x[:h], x[h:]
    m = t.cna(f"{p}.branch2.0", x2, make(f"{p}.M", half))
    t.cna(f"{p}.branch2.1", m, m, dw=True)
    c = t.cna(f"{p}.branch2.2", m, make(f"{p}.B", half))
    y = shuffle_labels(x1 + c)
    t.blocks.append(BlockWidths(len(y)))
    return y


def rebuild_spec(spec: ArchSpec, t: Trace, name: str | None = None) -> ArchSpec:
    """The spec whose widths are those of the walk ``t`` (skips that did not exist stay absent)."""
    cins = spec.block_inputs()
    stages, idx = [], 0
    for stage in spec.stages:
        blocks = []
        for b in stage.blocks:
            w = t.blocks[idx]
            changes: dict = dict(out_channels=w.out)
            if b.kind in ("ir", "uib", "fused"):
                changes["mid_channels"] = w.mid
            if b.se is not None:
                changes["se"] = replace(b.se, channels=w.se)
            if b.kind != "shuffle" and not _has_skip(b, cins[idx]):
                changes["skip"] = "none"
            blocks.append(replace(b, **changes))
            idx += 1
        stages.append(StageSpec(tuple(blocks)))
    head = replace(spec.head, conv_channels=t.head_conv, fc_channels=t.head_fc)
    return replace(spec, name=name or spec.name, stem=replace(spec.stem, channels=t.stem),
                   stages=tuple(stages), head=head)
