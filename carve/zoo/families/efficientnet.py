"""EfficientNet-B0 (Tan & Le 2019) and EfficientNetV2-B0 (Tan & Le 2021), SiLU throughout.

B0: MBConv with SE (ratio 1/4 of the block input). V2-B0: a 3x3 conv, then fused-MBConv in the
high-resolution stages and MBConv with SE after them, as in the official ``efficientnetv2-b0``
(TensorFlow padding and BN eps 1e-3, as timm's ``tf_efficientnetv2_b0``).
"""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, NormSpec, StemSpec
from ._common import expand, se, se_of_input, stage

# (expansion, kernel, stride, out, repeats)
_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
       (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]

# (kind, expansion, kernel, stride, out, repeats, se ratio)
_V2_B0 = [("conv", 1, 3, 1, 16, 1, 0), ("fused", 4, 3, 2, 32, 2, 0), ("fused", 4, 3, 2, 48, 2, 0),
          ("ir", 4, 3, 2, 96, 3, 0.25), ("ir", 6, 3, 1, 112, 5, 0.25), ("ir", 6, 3, 2, 192, 8, 0.25)]


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


def efficientnet_v2_b0_spec() -> ArchSpec:
    cin, stages = 32, []
    for kind, e, k, s, c, n, ratio in _V2_B0:
        blocks = []
        for i in range(n):
            stride = s if i == 0 else 1
            if kind == "conv":
                blocks.append(BlockSpec("conv", c, k, stride, act="silu"))
            else:
                mid = expand(cin, e)
                sespec = se(se_of_input(mid, e, ratio), "silu", "sigmoid") if ratio else None
                blocks.append(BlockSpec(kind, c, k, stride, act="silu", mid_channels=mid, se=sespec))
            cin = c
        stages.append(stage(*blocks))
    return ArchSpec(name="efficientnet_v2_b0", family="efficientnet_v2", stem=StemSpec(32, act="silu"),
                    stages=tuple(stages), head=HeadSpec(conv_channels=1280, conv_act="silu", dropout=0.2),
                    norm=NormSpec(eps=1e-3, momentum=0.01), padding="same", drop_path_rate=0.2)
