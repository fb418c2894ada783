"""Top-1/top-5 evaluation of a classifier on an image folder or a loader."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import eval_loader
from .ddp import all_reduce_sum


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``dtype`` (a no-op when None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(model: nn.Module, data_or_loader: str | Path | Iterable, img_size: int = 224,
             batch_size: int = 256, per_class: int = 0, workers: int = 2, device: str | torch.device | None = None,
             amp_dtype: torch.dtype | None = None, channels_last: bool = False,
             classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Return ``dict(top1, top5, loss, n, skipped)`` (percentages, mean cross-entropy, images counted,
    images skipped because they could not be decoded).

    ``data_or_loader``: a dataset (an image-folder root, its ``val/`` or ``test/`` split labelled by
    ``classes``, default the training split's; or a shard set, its held-out part) or batches
    ``(images, targets[, skipped paths])`` (a loader, a list). Under DDP with sharded loaders the
    sums cover all processes.
    """
    if isinstance(data_or_loader, (str, Path)):
        loader = eval_loader(data_or_loader, img_size, batch_size, per_class=per_class, workers=workers,
                             classes=classes)
    else:
        loader = data_or_loader
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct1 = correct5 = loss_sum = 0.0
    n = skipped = 0
    for batch in loader:
        images, targets = batch[0], batch[1]
        skipped += len(batch[2]) if len(batch) > 2 else 0
        if images.numel() == 0:
            continue
        images = images.to(dev, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(dev, non_blocking=True)
        with autocast(dev, amp_dtype):
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(targets[:, None])
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        n += targets.numel()
    model.train(was_training)
    correct1, correct5, loss_sum, total, skipped = all_reduce_sum([correct1, correct5, loss_sum, float(n),
                                                                   float(skipped)], dev)
    if total == 0:
        raise ValueError(f"evaluate: the data yielded no images ({int(skipped)} could not be decoded)")
    return dict(top1=100.0 * correct1 / total, top5=100.0 * correct5 / total, loss=loss_sum / total, n=int(total),
                skipped=int(skipped))
