"""MobileNetV4 conv models (Qin et al. 2024, Tables 10-12) as specs: the paper's tables as data.

Rows are ``("conv", kernel, stride, out)``, ``("fused", kernel, stride, expansion, out)`` or
``("uib", start_kernel, middle_kernel, stride, expansion, out, repeats)``; a UIB kernel of 0 leaves
that depthwise conv out (ExtraDW: both, IB: middle only, ConvNeXt: start only, FFN: neither).
ReLU throughout; the head pools, then a 1x1 conv (no bias) with BN and ReLU to 1280, as in timm's
``mobilenetv4_conv_*``.
"""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, StemSpec
from ._common import expand, stage

_SMALL = [
    [("conv", 3, 2, 32), ("conv", 1, 1, 32)],
    [("conv", 3, 2, 96), ("conv", 1, 1, 64)],
    [("uib", 5, 5, 2, 3, 96, 1), ("uib", 0, 3, 1, 2, 96, 4), ("uib", 3, 0, 1, 4, 96, 1)],
    [("uib", 3, 3, 2, 6, 128, 1), ("uib", 5, 5, 1, 4, 128, 1), ("uib", 0, 5, 1, 4, 128, 1),
     ("uib", 0, 5, 1, 3, 128, 1), ("uib", 0, 3, 1, 4, 128, 2)],
    [("conv", 1, 1, 960)],
]
_MEDIUM = [
    [("fused", 3, 2, 4, 48)],
    [("uib", 3, 5, 2, 4, 80, 1), ("uib", 3, 3, 1, 2, 80, 1)],
    [("uib", 3, 5, 2, 6, 160, 1), ("uib", 3, 3, 1, 4, 160, 2), ("uib", 3, 5, 1, 4, 160, 1),
     ("uib", 3, 3, 1, 4, 160, 1), ("uib", 3, 0, 1, 4, 160, 1), ("uib", 0, 0, 1, 2, 160, 1),
     ("uib", 3, 0, 1, 4, 160, 1)],
    [("uib", 5, 5, 2, 6, 256, 1), ("uib", 5, 5, 1, 4, 256, 1), ("uib", 3, 5, 1, 4, 256, 2),
     ("uib", 0, 0, 1, 4, 256, 1), ("uib", 3, 0, 1, 4, 256, 1), ("uib", 3, 5, 1, 2, 256, 1),
     ("uib", 5, 5, 1, 4, 256, 1), ("uib", 0, 0, 1, 4, 256, 2), ("uib", 5, 0, 1, 2, 256, 1)],
    [("conv", 1, 1, 960)],
]
_LARGE = [
    [("fused", 3, 2, 4, 48)],
    [("uib", 3, 5, 2, 4, 96, 1), ("uib", 3, 3, 1, 4, 96, 1)],
    [("uib", 3, 5, 2, 4, 192, 1), ("uib", 3, 3, 1, 4, 192, 3), ("uib", 3, 5, 1, 4, 192, 1),
     ("uib", 5, 3, 1, 4, 192, 5), ("uib", 3, 0, 1, 4, 192, 1)],
    [("uib", 5, 5, 2, 4, 512, 4), ("uib", 5, 0, 1, 4, 512, 1), ("uib", 5, 3, 1, 4, 512, 1),
     ("uib", 5, 0, 1, 4, 512, 2), ("uib", 5, 3, 1, 4, 512, 1), ("uib", 5, 5, 1, 4, 512, 1),
     ("uib", 5, 0, 1, 4, 512, 3)],
    [("conv", 1, 1, 960)],
]
_SIZES = {"small": (_SMALL, 32), "medium": (_MEDIUM, 32), "large": (_LARGE, 24)}


def mobilenet_v4_spec(size: str = "small") -> ArchSpec:
    if size not in _SIZES:
        raise ValueError(f"size: MobileNetV4 conv is defined for {sorted(_SIZES)}, got {size!r}")
    table, stem = _SIZES[size]
    cin, stages = stem, []
    for rows in table:
        blocks = []
        for row in rows:
            if row[0] == "conv":
                _, k, s, out = row
                blocks.append(BlockSpec("conv", out, k, s, act="relu"))
                cin = out
            elif row[0] == "fused":
                _, k, s, e, out = row
                blocks.append(BlockSpec("fused", out, k, s, act="relu", mid_channels=expand(cin, e)))
                cin = out
            else:
                _, k0, k1, s, e, out, n = row
                for i in range(n):
                    blocks.append(BlockSpec("uib", out, k1, s if i == 0 else 1, act="relu",
                                            mid_channels=expand(cin, e), start_kernel=k0))
                    cin = out
        stages.append(stage(*blocks))
    head = HeadSpec(fc_channels=1280, fc_act="relu", fc_norm=True, dropout=0.2)
    return ArchSpec(name=f"mobilenet_v4_conv_{size}", family="mobilenet_v4", stem=StemSpec(stem, act="relu"),
                    stages=tuple(stages), head=head)
