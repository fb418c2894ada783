"""MobileNet V1, V2 and V3 as specs, channel rounding as in TF/timm (``make_divisible``, 8).

V1: Howard et al. 2017 (depthwise-separable, ReLU6 as in timm's ``mobilenetv1_100``).
V2: Sandler et al. 2018 (inverted residuals with linear bottlenecks).
V3: Howard et al. 2019 (SE with hard-sigmoid, hard-swish, efficient last stage). Width 0.75
scales the body but keeps the 1280/1024 head, as the paper, TF and timm do.
"""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, NormSpec, StemSpec, make_divisible
from ._common import expand, se, stage, width_tag

# torchvision's MobileNetV3 (and the TF reference) use these BN settings; timm uses 1e-5 / 0.1.
TF_BN = NormSpec(eps=1e-3, momentum=0.01)


def mobilenet_v1_spec(width: float = 1.0) -> ArchSpec:
    rc = lambda c: make_divisible(c * width)  # noqa: E731
    table = [(64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2)]
    stages = []
    for c, n, s in table:
        blocks = [BlockSpec("ds", rc(c), 3, s if i == 0 else 1, act="relu6", pw_act=True, skip="none")
                  for i in range(n)]
        stages.append(stage(*blocks))
    return ArchSpec(name=f"mobilenet_v1_{width_tag(width)}", family="mobilenet_v1",
                    stem=StemSpec(rc(32), act="relu6"), stages=tuple(stages), head=HeadSpec(dropout=0.0))


def mobilenet_v2_spec(width: float = 1.0) -> ArchSpec:
    rc = lambda c: make_divisible(c * width)  # noqa: E731
    cin = rc(32)
    stages = [stage(BlockSpec("ds", rc(16), 3, 1, act="relu6"))]
    cin = rc(16)
    for c, n, s in [(24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]:
        blocks = []
        for i in range(n):
            blocks.append(BlockSpec("ir", rc(c), 3, s if i == 0 else 1, act="relu6", mid_channels=expand(cin, 6)))
            cin = rc(c)
        stages.append(stage(*blocks))
    head = HeadSpec(conv_channels=max(1280, rc(1280)), conv_act="relu6", dropout=0.2)
    return ArchSpec(name=f"mobilenet_v2_{width_tag(width)}", family="mobilenet_v2",
                    stem=StemSpec(rc(32), act="relu6"), stages=tuple(stages), head=head)


# (kernel, expansion, out, use_se, act, stride) per block; None expansion marks a DS / conv block.
_V3_LARGE = [
    [(3, None, 16, False, "relu", 1)],
    [(3, 4, 24, False, "relu", 2), (3, 3, 24, False, "relu", 1)],
    [(5, 3, 40, True, "relu", 2), (5, 3, 40, True, "relu", 1), (5, 3, 40, True, "relu", 1)],
    [(3, 6, 80, False, "hardswish", 2), (3, 2.5, 80, False, "hardswish", 1),
     (3, 2.3, 80, False, "hardswish", 1), (3, 2.3, 80, False, "hardswish", 1)],
    [(3, 6, 112, True, "hardswish", 1), (3, 6, 112, True, "hardswish", 1)],
    [(5, 6, 160, True, "hardswish", 2), (5, 6, 160, True, "hardswish", 1), (5, 6, 160, True, "hardswish", 1)],
    [(1, None, 960, False, "hardswish", 1)],
]
_V3_SMALL = [
    [(3, None, 16, True, "relu", 2)],
    [(3, 4.5, 24, False, "relu", 2), (3, 3.67, 24, False, "relu", 1)],
    [(5, 4, 40, True, "hardswish", 2), (5, 6, 40, True, "hardswish", 1), (5, 6, 40, True, "hardswish", 1)],
    [(5, 3, 48, True, "hardswish", 1), (5, 3, 48, True, "hardswish", 1)],
    [(5, 6, 96, True, "hardswish", 2), (5, 6, 96, True, "hardswish", 1), (5, 6, 96, True, "hardswish", 1)],
    [(1, None, 576, False, "hardswish", 1)],
]


def mobilenet_v3_spec(size: str = "large", width: float = 1.0) -> ArchSpec:
    rc = lambda c: make_divisible(c * width)  # noqa: E731
    table = _V3_LARGE if size == "large" else _V3_SMALL
    stem_ch = rc(16) if width >= 0.75 else 16
    cin, stages = stem_ch, []
    for si, rows in enumerate(table):
        blocks = []
        for k, e, c, use_se, act, s in rows:
            out = rc(c)
            if e is None and si == 0:
                sespec = se(make_divisible(cin * 0.25), "relu", "hardsigmoid") if use_se else None
                blocks.append(BlockSpec("ds", out, k, s, act=act, se=sespec))
            elif e is None:
                blocks.append(BlockSpec("conv", out, k, s, act=act))
            else:
                mid = expand(cin, e)
                sespec = se(make_divisible(mid * 0.25), "relu", "hardsigmoid") if use_se else None
                blocks.append(BlockSpec("ir", out, k, s, act=act, mid_channels=mid, se=sespec))
            cin = out
        stages.append(stage(*blocks))
    head = HeadSpec(fc_channels=1280 if size == "large" else 1024, fc_act="hardswish", dropout=0.2)
    return ArchSpec(name=f"mobilenet_v3_{size}_{width_tag(width)}", family=f"mobilenet_v3_{size}",
                    stem=StemSpec(stem_ch, act="hardswish"), stages=tuple(stages), head=head, norm=TF_BN)
