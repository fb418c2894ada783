"""What every INT8 flow shares: its error type and the calibration images it reads."""

from __future__ import annotations

from typing import Iterable

import torch


class QuantizeError(ValueError):
    """A quantization request that cannot be met; the message names the argument."""


def calibration_images(calib: Iterable | None, limit: int) -> list[torch.Tensor]:
    """Up to ``limit`` single images (1 x C x H x W) from batches of images or (images, labels)."""
    if calib is None:
        raise QuantizeError("calib: INT8 post-training quantization needs calibration data "
                            "(an iterable of image batches or (images, labels) batches, e.g. --calib DATA)")
    out: list[torch.Tensor] = []
    for batch in calib:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise QuantizeError(f"calib: expected image batches shaped N x C x H x W, got {type(x).__name__}"
                                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
        out.extend(x.split(1))
        if len(out) >= limit:
            break
    if not out:
        raise QuantizeError("calib: the calibration data yielded no images")
    return out[:limit]


__all__ = ["QuantizeError", "calibration_images"]
