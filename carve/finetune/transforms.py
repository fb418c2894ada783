"""Box-aware augmentation with torchvision transforms v2 (the torchvision detection recipes)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

AUGMENT_LEVELS = ("full", "flip", "none")


class _SafeIoUCrop(nn.Module):
    """``RandomIoUCrop`` that passes images without boxes through (it needs boxes to crop around)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.transforms import v2

        self.crop = v2.RandomIoUCrop()

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if target["boxes"].shape[0] == 0:
            return image, target
        return self.crop(image, target)


def train_transforms(head: str, img_size: int | None = None, fill: Sequence[float] = (124, 116, 104),
                     level: str = "full") -> nn.Module:
    """Training augmentation per head.

    SSD (``ssdlite``): photometric distortion, zoom-out, IoU crop, horizontal flip, then a
    resize to ``img_size`` (square, as the SSD transform does anyway, so batches stay small).
    Two-stage heads: horizontal flip only (torchvision's Faster R-CNN recipe). ``level="flip"``
    keeps only the flip (for overfitting checks and tiny runs). Degenerate boxes left after
    cropping are removed by ``SanitizeBoundingBoxes``.
    """
    from torchvision.transforms import v2

    if level not in AUGMENT_LEVELS:
        raise ValueError(f"augment: expected one of {', '.join(AUGMENT_LEVELS)}, got {level!r}")
    steps: list[nn.Module] = []
    if head == "ssdlite" and level == "full":
        steps += [v2.RandomPhotometricDistort(p=0.5), v2.RandomZoomOut(fill=list(fill)), _SafeIoUCrop()]
    if level != "none":
        steps.append(v2.RandomHorizontalFlip(0.5))
    if head == "ssdlite" and img_size:
        steps.append(v2.Resize((img_size, img_size), antialias=True))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.SanitizeBoundingBoxes()]
    return v2.Compose(steps)


def eval_transforms() -> nn.Module:
    """Evaluation: only to float in [0, 1]; the detector's own transform resizes and maps boxes back."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToDtype(torch.float32, scale=True)])
