"""What the residual blocks share: when a block adds its input, how it adds it, and its SE module."""

from __future__ import annotations

import torch
from torch import nn

from .layers import DropPath, SqueezeExcite
from .spec import BlockSpec, NormSpec


def se_module(spec: BlockSpec, channels: int, norm: NormSpec) -> nn.Module | None:
    """The block's squeeze-and-excitation over ``channels``, or None when it has none."""
    if spec.se is None:
        return None
    return SqueezeExcite(channels, spec.se.channels, spec.se.act, spec.se.gate, norm if spec.se.norm else None)


def has_skip(spec: BlockSpec, cin: int) -> bool:
    """Whether a block of ``spec`` with input width ``cin`` adds its input to its output."""
    if spec.skip == "none" or spec.stride != 1:
        return False
    if spec.skip == "partial":
        return cin <= spec.out_channels
    return cin == spec.out_channels


class Residual(nn.Module):
    """Adds the shortcut (fully or into the first input-width channels) with stochastic depth."""

    in_channels: int
    has_skip: bool
    partial: bool

    def _init_skip(self, spec: BlockSpec, cin: int, drop_path: float) -> None:
        self.in_channels = cin
        self.has_skip = has_skip(spec, cin)
        self.partial = self.has_skip and cin != spec.out_channels
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()
        self._drops = self.has_skip and drop_path > 0

    def _add(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        # Placeholders (Identity) are skipped by flags: each eager module call costs a few us.
        if not self.has_skip:
            return x
        if self._drops:
            x = self.drop_path(x)
        if self.partial:
            c = self.in_channels
            return torch.cat([x[:, :c] + shortcut, x[:, c:]], dim=1)
        return x + shortcut
