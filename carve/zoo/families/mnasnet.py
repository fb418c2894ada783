"""MnasNet (Tan et al. 2019) as specs: MnasNet-B1 (no SE; torchvision's ``mnasnet*`` and timm's
``mnasnet_*``) at several widths, and the small model of the reference TPU implementation
(timm's ``mnasnet_small``, with SE). Widths are rounded to multiples of 8 as both peers do."""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, StemSpec, make_divisible
from ._common import expand, se, se_of_input, stage, width_tag

# (kind, expansion, kernel, stride, out, repeats, se ratio); the first block never adds its input
_B1 = [("ds", 1, 3, 1, 16, 1, 0), ("ir", 3, 3, 2, 24, 3, 0), ("ir", 3, 5, 2, 40, 3, 0), ("ir", 6, 5, 2, 80, 3, 0),
       ("ir", 6, 3, 1, 96, 2, 0), ("ir", 6, 5, 2, 192, 4, 0), ("ir", 6, 3, 1, 320, 1, 0)]
_SMALL = [("ds", 1, 3, 1, 8, 1, 0), ("ir", 3, 3, 2, 16, 1, 0), ("ir", 6, 3, 2, 16, 2, 0),
          ("ir", 6, 5, 2, 32, 4, 0.25), ("ir", 6, 3, 1, 32, 3, 0.25), ("ir", 6, 5, 2, 88, 3, 0.25),
          ("ir", 6, 3, 1, 144, 1, 0)]


def _mnasnet(name: str, table: list, stem: int, width: float, first_skip: str) -> ArchSpec:
    rc = lambda c: make_divisible(c * width)  # noqa: E731
    cin = rc(stem)
    stem_spec, stages = StemSpec(cin, act="relu"), []
    for si, (kind, e, k, s, c, n, ratio) in enumerate(table):
        blocks = []
        for i in range(n):
            out, stride = rc(c), s if i == 0 else 1
            if kind == "ds":
                blocks.append(BlockSpec("ds", out, k, stride, act="relu", skip=first_skip))
            else:
                mid = expand(cin, e)
                sespec = se(se_of_input(mid, e, ratio), "relu", "sigmoid") if ratio else None
                blocks.append(BlockSpec("ir", out, k, stride, act="relu", mid_channels=mid, se=sespec))
            cin = out
        stages.append(stage(*blocks))
    return ArchSpec(name=name, family="mnasnet", stem=stem_spec, stages=tuple(stages),
                    head=HeadSpec(conv_channels=1280, conv_act="relu", dropout=0.2))


def mnasnet_spec(width: float = 1.0) -> ArchSpec:
    """MnasNet-B1 at a width multiplier (the head stays 1280 wide)."""
    return _mnasnet(f"mnasnet_{width_tag(width)}", _B1, 32, width, "none")


def mnasnet_small_spec() -> ArchSpec:
    return _mnasnet("mnasnet_small", _SMALL, 8, 1.0, "auto")
