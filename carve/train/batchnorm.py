"""Re-estimate BatchNorm statistics for the weights as they are.

Running statistics are an exponential average over past training steps. With a short schedule and
a small BN momentum (torchvision's MobileNetV3 uses 0.01) they still describe the weights of
many steps ago, and evaluation with them can sit at chance while the network itself has learned
(a MobileNetV3-Large after one CIFAR-10 epoch: 11% top-1 as trained, 20% once recalibrated). Once-
for-All recalibrates its sub-networks the same way before it evaluates them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .data import SafeImageFolder, build_transforms, collate_skipping, find_split
from .shards import ShardDataset, is_shards

_BN = nn.modules.batchnorm._BatchNorm


def calibration_loader(root: str | Path, img_size: int, batch_size: int, batches: int, per_class: int = 0,
                       seed: int = 0, val_fraction: float = 0.1) -> DataLoader:
    """``batches`` batches of training images (no augmentation) in a fixed shuffled order.

    Uses its own random generator, so drawing from it leaves the global RNG (and an exact resume)
    untouched.
    """
    if is_shards(root):
        shards = ShardDataset(root, "train", build_transforms("none", img_size, False), per_class, val_fraction,
                              shuffle=True, seed=seed, batch_size=batch_size, limit=batches * batch_size)
        return DataLoader(shards, batch_size=batch_size, collate_fn=collate_skipping)
    dataset = SafeImageFolder(find_split(root, ("train",)), build_transforms("none", img_size, False), per_class)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    subset = Subset(dataset, order[:batches * batch_size].tolist())
    return DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate_skipping,
                      generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu",
                   channels_last: bool = False) -> int:
    """Replace every BatchNorm's running mean and variance by their average over ``loader``.

    The first item of each batch is an image tensor, or a list of image tensors (what a detector
    takes). Only the BatchNorm layers run in training mode (dropout and drop-path stay off); the
    model is left in eval mode. Returns the number of images used (0 and nothing changed without BN
    layers).
    """
    norms = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    seen = 0
    try:
        for batch in loader:
            images = batch[0]
            if isinstance(images, torch.Tensor):
                images = images.to(device)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
            else:
                images = [im.to(device) for im in images]
            if len(images):
                model(images)
                seen += len(images)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.eval()
    if seen == 0:
        raise ValueError("bn_recalibration: the calibration loader yielded no images")
    return seen
