"""EfficientNet-B0 (Tan & Le 2019): MBConv with SE (ratio 1/4 of the block input) and SiLU."""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, StemSpec
from ._common import expand, se, stage

# (expansion, kernel, stride, out, repeats)
_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
       (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def efficientnet_b0_spec() -> ArchSpec:
    cin, stages = 32, []
    for e, k, s, c, n in _B0:
        blocks = []
        for i in range(n):
            sespec = se(max(1, cin // 4), "silu", "sigmoid")
            stride = s if i == 0 else 1
            if e == 1:
                blocks.append(BlockSpec("ds", c, k, stride, act="silu", se=sespec))
            else:
                blocks.append(BlockSpec("ir", c, k, stride, act="silu", mid_channels=expand(cin, e), se=sespec))
            cin = c
        stages.append(stage(*blocks))
    return ArchSpec(name="efficientnet_b0", family="efficientnet", stem=StemSpec(32, act="silu"),
                    stages=tuple(stages), head=HeadSpec(conv_channels=1280, conv_act="silu", dropout=0.2),
                    drop_path_rate=0.2)
