"""Hard-swish written with the elementwise ops that INT8 runtimes have kernels for.

``hardswish(x) = x * relu6(x + 3) / 6``. Neither XNNPACK (under LiteRT) nor ONNX Runtime has an INT8
hard-swish kernel: left whole, each one leaves INT8 for a dequantize, a float hard-swish and a
quantize (in LiteRT, a TFLite kernel between XNNPACK partitions), and on MobileNetV3-style
networks that cost more than INT8 saved. Written as an addition, a clamp and two multiplications,
it stays in INT8 kernels from one convolution to the next. The same function, so FP32 results do
not change; only the INT8 graphs are built from the rewritten form.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class IntegerHardswish(nn.Module):
    """``nn.Hardswish`` as ``x * relu6(x + 3) * (1/6)``. The constants are 4-D so that LiteRT's
    converter keeps these ops in NHWC (a 0-d constant made it transpose around each of them)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("three", torch.full((1, 1, 1, 1), 3.0), persistent=False)
        self.register_buffer("sixth", torch.full((1, 1, 1, 1), 1 / 6), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three, sixth = self.three, self.sixth
        if x.dim() != 4:  # e.g. after the classifier's hidden linear layer
            three, sixth = three.view((1,) * x.dim()), sixth.view((1,) * x.dim())
        return x * (torch.nn.functional.relu6(x + three) * sixth)


def with_integer_hardswish(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each ``nn.Hardswish`` replaced by :class:`IntegerHardswish` (same
    module names, same function); ``model`` itself when it has none."""
    if not any(isinstance(m, nn.Hardswish) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Hardswish):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, IntegerHardswish())
    return model


__all__ = ["IntegerHardswish", "with_integer_hardswish"]
