"""ShuffleNetV2 (Ma et al. 2018): channel split, two branches, concat and channel shuffle; and
ShuffleNetV1 (Zhang et al. 2018): grouped 1x1 convs with a channel shuffle between them."""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, StemSpec
from ._common import stage, width_tag

_WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
           1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048)}
_REPEATS = (4, 8, 4)


def shufflenet_v2_spec(width: float = 1.0) -> ArchSpec:
    if width not in _WIDTHS:
        raise ValueError(f"width: ShuffleNetV2 is defined for {sorted(_WIDTHS)}, got {width}")
    *stage_widths, last = _WIDTHS[width]
    stages = []
    for c, n in zip(stage_widths, _REPEATS):
        blocks = [BlockSpec("shuffle", c, 3, 2 if i == 0 else 1, act="relu") for i in range(n)]
        stages.append(stage(*blocks))
    return ArchSpec(name=f"shufflenet_v2_{width_tag(width)}", family="shufflenet_v2",
                    stem=StemSpec(24, act="relu", pool=True), stages=tuple(stages),
                    head=HeadSpec(conv_channels=last, conv_act="relu", dropout=0.0))


# ShuffleNetV1 with 3 groups (Zhang et al. 2018, Table 1), as the authors' released models:
# width: (stem, stage widths); the bottleneck is a quarter of the unit's output width
_V1_WIDTHS = {0.5: (12, (120, 240, 480)), 1.0: (24, (240, 480, 960)),
              1.5: (24, (360, 720, 1440)), 2.0: (48, (480, 960, 1920))}


def shufflenet_v1_spec(width: float = 1.0, groups: int = 3) -> ArchSpec:
    """ShuffleNetV1 (g=3): the first unit's first 1x1 conv is not grouped (its input is narrow)."""
    if width not in _V1_WIDTHS:
        raise ValueError(f"width: ShuffleNetV1 is defined for {sorted(_V1_WIDTHS)}, got {width}")
    stem, widths = _V1_WIDTHS[width]
    stages = []
    for si, (c, n) in enumerate(zip(widths, _REPEATS)):
        blocks = [BlockSpec("shuffle_v1", c, 3, 2 if i == 0 else 1, act="relu", mid_channels=c // 4, groups=groups,
                            first_groups=1 if si == 0 and i == 0 else 0) for i in range(n)]
        stages.append(stage(*blocks))
    return ArchSpec(name=f"shufflenet_v1_{width_tag(width)}", family="shufflenet_v1",
                    stem=StemSpec(stem, act="relu", pool=True), stages=tuple(stages), head=HeadSpec(dropout=0.0))
