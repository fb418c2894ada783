"""ShuffleNetV2 (Ma et al. 2018): channel split, two branches, concat and channel shuffle."""

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
