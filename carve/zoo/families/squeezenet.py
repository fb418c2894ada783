"""SqueezeNet 1.0 (Iandola et al. 2016, Table 1) and 1.1 (the authors' v1.1 release) as specs.

No BatchNorm anywhere (convs carry biases), an unpadded stem conv, 3x3/2 max pools with Caffe's
ceil rounding, Fire modules without bypass, and a 1x1 conv classifier with ReLU before the
global pool, as torchvision's ``squeezenet1_0``/``squeezenet1_1``.
"""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, NormSpec, StemSpec
from ._common import stage

# version: (stem width, stem kernel, stages of (squeeze width, output width) Fire modules); every
# stage after the first starts with a 3x3/2 max pool
_VERSIONS = {
    "1_0": (96, 7, [[(16, 128), (16, 128), (32, 256)], [(32, 256), (48, 384), (48, 384), (64, 512)],
                    [(64, 512)]]),
    "1_1": (64, 3, [[(16, 128), (16, 128)], [(32, 256), (32, 256)], [(48, 384), (48, 384), (64, 512), (64, 512)]]),
}


def squeezenet_spec(version: str = "1_0") -> ArchSpec:
    if version not in _VERSIONS:
        raise ValueError(f"version: SqueezeNet is defined for {sorted(_VERSIONS)}, got {version!r}")
    stem, kernel, table = _VERSIONS[version]
    stages = []
    for si, rows in enumerate(table):
        stages.append(stage(*(BlockSpec("fire", out, 3, 2 if si and i == 0 else 1, act="relu", mid_channels=sq,
                                        skip="none") for i, (sq, out) in enumerate(rows))))
    return ArchSpec(name=f"squeezenet_{version}", family="squeezenet",
                    stem=StemSpec(stem, kernel=kernel, stride=2, act="relu", pool=True, pad=False),
                    stages=tuple(stages), head=HeadSpec(dropout=0.5, classifier="conv"),
                    norm=NormSpec(kind="none"), pooling="ceil")
