"""``check_mlpackage``: a Core ML package checked against the PyTorch model it came from without
running it: interface, operations, and every convolution/linear weight compared by value.

Core ML folds BatchNorm into the convolution before it, so the reference weights are the model's
after ``fold_any`` (``fold`` for carve models, torch.fx fusion for others) and the comparison is exact up to float rounding; palettised packages
are compared after their lookup tables are expanded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from carve.latency.coreml_runtime import INPUT_NAME, OUTPUT_NAME, read_mlpackage
from carve.zoo.mobileone import deployed

from .folding import fold_any


@dataclass
class PackageCheck:
    """How a package matches its PyTorch model; ``problems`` lists every mismatch found (empty: none)."""

    input_shape: list[int]
    output_shape: list[int]
    ops: dict[str, int]
    weight_tensors: int
    weight_elements: int
    reference_tensors: int
    reference_elements: int
    max_weight_diff: float
    palettised_tensors: int
    max_palette_size: int | None
    package_bytes: int
    weight_file_bytes: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), ok=self.ok)


def reference_weights(model: nn.Module, example: torch.Tensor) -> list[torch.Tensor]:
    """The convolution and linear weights ``model`` uses, BatchNorm folded, in the order its forward
    pass calls them (the order the converted program holds them in)."""
    ref = fold_any(model)
    called: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, *_: called.append(mod.weight.detach().clone()))
             for m in ref.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            ref.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return called


def check_mlpackage(model: nn.Module, path: str | Path, input_size: int = 224, in_channels: int | None = None,
                    tolerance: float = 1e-4) -> PackageCheck:
    """Compare the package at ``path`` with ``model``: input/output names and shapes, the weights' count,
    shapes and values (max abs difference within ``tolerance`` of the folded PyTorch weights, relative to
    the largest weight of a tensor where that exceeds 1)."""
    summary = read_mlpackage(path)
    cin = in_channels or getattr(getattr(model, "spec", None), "in_channels", 3)
    x = torch.zeros(1, cin, input_size, input_size)
    with torch.no_grad():
        out_shape = list(deployed(model).eval()(x).shape)
    refs = reference_weights(model, x)
    problems = []
    if summary.inputs != {INPUT_NAME: tuple(x.shape)}:
        problems.append(f"inputs: expected {{{INPUT_NAME!r}: {tuple(x.shape)}}}, got {summary.inputs}")
    if summary.outputs != {OUTPUT_NAME: tuple(out_shape)}:
        problems.append(f"outputs: expected {{{OUTPUT_NAME!r}: {tuple(out_shape)}}}, got {summary.outputs}")
    if len(refs) != len(summary.weights):
        problems.append(f"weights: the model calls {len(refs)} convolution/linear layers, the package holds "
                        f"{len(summary.weights)}")
    max_diff = 0.0
    for i, (ref, got) in enumerate(zip(refs, summary.weights)):
        if ref.numel() != got.values.size:
            problems.append(f"weights[{i}] {got.name}: {got.values.size} values, the model's has {ref.numel()} "
                            f"({tuple(ref.shape)})")
            continue
        diff = float(np.abs(ref.numpy().reshape(-1) - got.values.reshape(-1)).max())
        max_diff = max(max_diff, diff)
        if diff > tolerance * max(1.0, float(ref.abs().max())):  # relative for large weights (FP16 rounding)
            problems.append(f"weights[{i}] {got.name}: values differ from the folded model's by up to {diff:.2e}")
    palettes = [w.palette_size for w in summary.weights if w.palette_size is not None]
    return PackageCheck(input_shape=list(summary.inputs.get(INPUT_NAME, ())),
                        output_shape=list(summary.outputs.get(OUTPUT_NAME, ())), ops=summary.ops,
                        weight_tensors=len(summary.weights), weight_elements=summary.weight_elements,
                        reference_tensors=len(refs), reference_elements=sum(r.numel() for r in refs),
                        max_weight_diff=max_diff, palettised_tensors=len(palettes),
                        max_palette_size=max(palettes) if palettes else None,
                        package_bytes=summary.package_bytes, weight_file_bytes=summary.weight_file_bytes,
                        problems=problems)
