"""FBNet-C (Wu et al. 2019, Fig. 4) as timm's ``fbnetc_100`` builds it.

FBNet's candidate blocks all keep the 1x1 expand conv, even at expansion 1; those blocks are UIBs
with only the middle depthwise conv (carve's ``ir`` drops the expand conv at expansion 1). BN eps
is 1e-3, as for timm's published weights.
"""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, NormSpec, StemSpec
from ._common import expand, stage

# per stage: (kernel, expansion, out, repeats) per row; the first row of a stage carries its stride
_C = [
    (1, [(3, 1, 16, 1)]),
    (2, [(3, 6, 24, 1), (3, 1, 24, 2)]),
    (2, [(5, 6, 32, 1), (5, 3, 32, 1), (5, 6, 32, 1), (3, 6, 32, 1)]),
    (2, [(5, 6, 64, 1), (5, 3, 64, 1), (5, 6, 64, 2)]),
    (1, [(5, 6, 112, 3), (5, 3, 112, 1)]),
    (2, [(5, 6, 184, 4)]),
    (1, [(3, 6, 352, 1)]),
]


def fbnet_c_spec() -> ArchSpec:
    cin, stages = 16, []
    for stride, rows in _C:
        blocks = []
        for k, e, c, n in rows:
            for _ in range(n):
                s = stride if not blocks else 1
                kind = "uib" if e == 1 else "ir"
                blocks.append(BlockSpec(kind, c, k, s, act="relu", mid_channels=expand(cin, e)))
                cin = c
        stages.append(stage(*blocks))
    return ArchSpec(name="fbnet_c", family="fbnet", stem=StemSpec(16, act="relu"), stages=tuple(stages),
                    head=HeadSpec(conv_channels=1984, conv_act="relu", dropout=0.2),
                    norm=NormSpec(eps=1e-3, momentum=0.1))
