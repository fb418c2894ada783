"""Parity of a deployed artefact with the PyTorch model it came from, on real images."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from carve.zoo.mobileone import deployed


@dataclass
class Parity:
    """How closely an artefact's outputs follow PyTorch's on ``images`` real images."""

    images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # fraction of images whose arg-max class is the same

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_batches(data: Iterable[Any], limit: int) -> list[torch.Tensor]:
    """Up to ``limit`` images, one 1 x C x H x W tensor each, from batches of images or (images, labels)."""
    out: list[torch.Tensor] = []
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"images: expected batches shaped N x C x H x W, got {type(x).__name__}")
        out.extend(x.float().split(1))
        if len(out) >= limit:
            break
    if not out:
        raise ValueError("images: the data yielded no images")
    return out[:limit]


def check_parity(model: nn.Module, run: Callable[[np.ndarray], np.ndarray], images: Iterable[Any],
                 limit: int = 1000) -> Parity:
    """Compare ``run`` (an artefact's numpy call, batch 1) with ``model`` in eval mode, image by image."""
    ref_model = deployed(model).eval()
    diffs, means, agree = [], [], 0
    xs = image_batches(images, limit)
    with torch.inference_mode():
        for x in xs:
            ref = ref_model(x).float().numpy()
            got = np.asarray(run(np.ascontiguousarray(x.numpy())), dtype=np.float32).reshape(ref.shape)
            d = np.abs(got - ref)
            diffs.append(float(d.max()))
            means.append(float(d.mean()))
            agree += int(np.argmax(got.reshape(len(got), -1), 1)[0] == np.argmax(ref.reshape(len(ref), -1), 1)[0])
    return Parity(images=len(xs), max_abs_diff=max(diffs), mean_abs_diff=float(np.mean(means)),
                  top1_agreement=agree / len(xs))
