"""Bottleneck adapters after a backbone's blocks (Houlsby/Rebuffi residual adapters, in 1x1 convs).

Each adapter is ``x + up(act(down(x)))`` with ``up`` zero-initialised, so an adapted model starts
out computing exactly what its base does. The adapter sits inside its block as ``<block>.adapter``
and runs on the block's output through a forward hook, so the block's own modules, names and
feature taps stay as they were.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """``x + up(act(down(x)))``: ``channels -> hidden -> channels`` 1x1 convs, ``up`` starting at zero."""

    def __init__(self, channels: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.down = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.up = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.drop(self.act(self.down(x))))


def _run_adapter(block: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return block.adapter(output)


def add_adapters(body: nn.Module, reduction: int = 4, dropout: float = 0.0) -> list[str]:
    """Put a :class:`BottleneckAdapter` (``out_channels / reduction`` wide, at least 8) after every
    block of a zoo body (``body.blocks[stage][block]``, sized from ``body.spec``); returns the names
    of the adapted blocks."""
    names = []
    for si, stage in enumerate(body.blocks):
        for bi, block in enumerate(stage):
            channels = body.spec.stages[si].blocks[bi].out_channels
            block.add_module("adapter", BottleneckAdapter(channels, max(8, channels // reduction), dropout))
            block.register_forward_hook(_run_adapter)
            names.append(f"blocks.{si}.{bi}")
    return names
