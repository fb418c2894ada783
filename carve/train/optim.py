"""SGD with Nesterov momentum (no weight decay on BN and bias, per-prefix LR) and cosine warm-up."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float,
                 lr_scale: dict[str, float] | None = None) -> list[dict]:
    """Parameter groups: 1-d tensors (BN, bias) get no weight decay; ``lr_scale`` maps name
    prefixes to LR multipliers (longest matching prefix wins). Each group carries ``lr_scale``."""
    scales = sorted((lr_scale or {}).items(), key=lambda kv: -len(kv[0]))
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((s for prefix, s in scales if name.startswith(prefix)), 1.0)
        decay = p.ndim > 1
        key = (scale, decay)
        if key not in groups:
            groups[key] = dict(params=[], names=[], weight_decay=weight_decay if decay else 0.0, lr_scale=scale)
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 4e-5,
                    nesterov: bool = True, lr_scale: dict[str, float] | None = None) -> torch.optim.SGD:
    """SGD (Nesterov by default) with no weight decay on BN/bias and per-prefix LR multipliers."""
    groups = param_groups(model, weight_decay, lr_scale)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


class WarmupCosine:
    """LR factor at a step: linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine to ``min_factor``."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0):
        self.total_steps, self.warmup_steps, self.min_factor = max(1, total_steps), warmup_steps, min_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_factor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step (call ``step()`` after every optimizer step) cosine decay with linear warm-up."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_factor))


def scaled_lr(lr: float, global_batch: int, base_batch: int) -> float:
    """Linear LR scaling rule: ``lr`` is for ``base_batch`` images (0 disables scaling)."""
    return lr * global_batch / base_batch if base_batch else lr
