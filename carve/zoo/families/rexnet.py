"""ReXNet (Han et al. 2021): channels grow linearly block by block, partial residuals, SE with BN.

Expansion convs use SiLU, the depthwise output is passed through ReLU6 after SE, and a stride-1
block that widens adds its input to its first channels (ReXNet's partial shortcut).
"""

from __future__ import annotations

from math import ceil

from ..spec import ArchSpec, BlockSpec, HeadSpec, StemSpec, make_divisible
from ._common import se, stage, width_tag


def rexnet_spec(width: float = 1.0, depth: float = 1.0) -> ArchSpec:
    layers = [ceil(n * depth) for n in (1, 2, 2, 3, 3, 5)]
    strides = [1, 2, 2, 2, 1, 2]
    n_blocks = sum(layers)
    base = 16 / width if width < 1.0 else 16
    outs = []
    for _ in range(n_blocks):
        outs.append(make_divisible(round(base * width), 1))
        base += 180 / n_blocks
    stem_base = 32 / width if width < 1.0 else 32
    cin = make_divisible(round(stem_base * width), 1)
    stem_ch, idx, stages = cin, 0, []
    for si, n in enumerate(layers):
        blocks = []
        for i in range(n):
            exp = 1 if idx == 0 else 6
            mid = cin if exp == 1 else make_divisible(round(cin * exp), 1)
            sespec = se(make_divisible(int(mid * (1 / 12)), 1), "relu", "sigmoid", norm=True) if idx >= layers[0] + layers[1] else None
            blocks.append(BlockSpec("ir", outs[idx], 3, strides[si] if i == 0 else 1, act="silu", mid_channels=mid,
                                    dw_act="relu6", se=sespec, se_before_dw_act=True, skip="partial"))
            cin, idx = outs[idx], idx + 1
        stages.append(stage(*blocks))
    head = HeadSpec(conv_channels=make_divisible(1280 * width, 1), conv_act="silu", dropout=0.2)
    return ArchSpec(name=f"rexnet_{width_tag(width)}", family="rexnet", stem=StemSpec(stem_ch, act="silu"),
                    stages=tuple(stages), head=head)
