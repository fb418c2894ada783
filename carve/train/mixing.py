"""CutMix / MixUp on batches (torchvision transforms v2), applied with a probability."""

from __future__ import annotations

import torch
from torchvision.transforms import v2


class BatchMixer:
    """With probability ``prob`` mix a batch: CutMix with probability ``switch_prob`` (when both are
    enabled), else MixUp. Returns soft targets (rows sum to one); unmixed batches get one-hot rows.
    Randomness comes from torch's global RNG, so checkpoints that capture it resume exactly."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 prob: float = 1.0, switch_prob: float = 0.5):
        self.num_classes = num_classes
        self.prob = prob
        self.mixup = v2.MixUp(alpha=mixup_alpha, num_classes=num_classes) if mixup_alpha > 0 else None
        self.cutmix = v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes) if cutmix_alpha > 0 else None
        self.switch_prob = switch_prob if self.mixup and self.cutmix else (1.0 if self.cutmix else 0.0)

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup is not None or self.cutmix is not None)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.enabled and torch.rand(()).item() < self.prob:
            op = self.cutmix if torch.rand(()).item() < self.switch_prob else self.mixup
            return op(images, targets)  # type: ignore[misc]
        return images, torch.nn.functional.one_hot(targets, self.num_classes).to(images.dtype)
