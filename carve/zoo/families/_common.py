"""Shorthands the family modules use to write block tables compactly."""

from __future__ import annotations

from ..spec import BlockSpec, SESpec, StageSpec, make_divisible


def width_tag(width: float) -> str:
    """0.75 -> '075', 1.0 -> '100', 1.5 -> '150' (timm-style name suffix)."""
    return f"{round(width * 100):03d}"


def expand(cin: int, ratio: float, divisor: int = 8) -> int:
    """Expanded (mid) width of an inverted residual, as timm computes it."""
    return cin if ratio == 1 else make_divisible(cin * ratio, divisor)


def se(channels: int, act: str = "relu", gate: str = "sigmoid", norm: bool = False) -> SESpec:
    return SESpec(channels=max(1, channels), act=act, gate=gate, norm=norm)


def stage(*blocks: BlockSpec) -> StageSpec:
    return StageSpec(tuple(blocks))


def se_of_input(mid: int, expansion: float, ratio: float = 0.25) -> int:
    """SE width as a ratio of the block's input (EfficientNet, MnasNet): timm's round(mid * ratio / e)."""
    return max(1, round(mid * ratio / expansion))
