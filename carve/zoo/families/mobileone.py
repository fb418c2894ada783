"""MobileOne S0-S4 (Vasu et al. 2023, Table 7) as specs.

A MobileOne stage repeats a depthwise 3x3 MobileOne block and a pointwise 1x1 one; S0 trains
with 4 conv branches per block, the others with 1; S4 adds SE (1/16) to the last blocks of the
last two stages. The stem is a MobileOne block too. Deployed (``reparameterize()``), each block is
one conv with bias, which is what the paper's parameter counts describe.
"""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, StemSpec, make_divisible
from ._common import se, stage

_DEPTHS = (2, 8, 10, 1)
_WIDTHS = (64, 128, 256, 512)
# variant: (width factor per stage, stem width, conv branches, SE blocks per stage)
_VARIANTS = {
    "s0": ((0.75, 1.0, 1.0, 2.0), 48, 4, (0, 0, 0, 0)),
    "s1": ((1.5, 1.5, 2.0, 2.5), 64, 1, (0, 0, 0, 0)),
    "s2": ((1.5, 2.0, 2.5, 4.0), 64, 1, (0, 0, 0, 0)),
    "s3": ((2.0, 2.5, 3.0, 4.0), 64, 1, (0, 0, 0, 0)),
    "s4": ((3.0, 3.5, 3.5, 4.0), 64, 1, (0, 0, 5, 1)),
}


def _se(channels: int, on: bool):
    return se(make_divisible(channels / 16, 8, round_limit=0.0), "relu", "sigmoid") if on else None


def mobileone_spec(variant: str = "s0") -> ArchSpec:
    if variant not in _VARIANTS:
        raise ValueError(f"variant: MobileOne is defined for {sorted(_VARIANTS)}, got {variant!r}")
    factors, stem, branches, se_blocks = _VARIANTS[variant]
    cin, stages = stem, []
    for depth, width, factor, n_se in zip(_DEPTHS, _WIDTHS, factors, se_blocks):
        out, blocks = make_divisible(width * factor), []
        for i in range(depth):
            has_se = i >= depth - n_se
            blocks.append(BlockSpec("mobileone", cin, 3, 2 if i == 0 else 1, act="relu", groups=cin,
                                    branches=branches, se=_se(cin, has_se)))
            blocks.append(BlockSpec("mobileone", out, 1, 1, act="relu", branches=branches, se=_se(out, has_se)))
            cin = out
        stages.append(stage(*blocks))
    return ArchSpec(name=f"mobileone_{variant}", family="mobileone",
                    stem=StemSpec(stem, act="relu", kind="mobileone"), stages=tuple(stages),
                    head=HeadSpec(dropout=0.0))
