"""The ``inherited`` accuracy estimator: a candidate sub-network starts from a pretrained model's weights.

The candidate inherits the most important channels of ``ObjectiveConfig.inherit_from`` (a channel
sub-network of it, see ``carve.zoo.subnets``), its BatchNorm statistics are re-estimated on a few
training batches, and its top-1 on held-out images is the estimate: seconds per candidate, and
every candidate starts from the same pretrained footing (Once-for-All scores sub-networks the same
way, from a supernet).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from carve.train import calibration_loader, eval_loader, evaluate, recalibrate_bn
from carve.zoo import ArchSpec, create_model
from carve.zoo.subnets import inherit


def load_source(text: str) -> nn.Module:
    """The model candidates inherit from: ``NAME@TAG`` (a zoo model with its pretrained weights, e.g.
    ``carve_125@carve:tiny-imagenet``) or a carve weights file."""
    name, _, tag = text.partition("@")
    return create_model(name, pretrained=tag) if tag else create_model(text)


class InheritedAccuracy:
    """Held-out top-1 of candidates that inherit ``source``'s weights (data read once, then reused)."""

    def __init__(self, source: str, data: str, img_size: int, batch_size: int = 64, calibration_batches: int = 20,
                 val_per_class: int = 10, seed: int = 0):
        self.source = load_source(source).eval()
        self.calibration = list(calibration_loader(data, img_size, batch_size, max(1, calibration_batches),
                                                   seed=seed)) if calibration_batches else []
        self.held_out = list(eval_loader(data, img_size, batch_size, per_class=val_per_class, workers=0))

    def __call__(self, spec: ArchSpec) -> float:
        return self.score_model(inherit(self.source, spec.with_num_classes(self.source.spec.head.num_classes)))

    def score_model(self, model: nn.Module) -> float:
        """The same estimate for a model that has weights of its own (a pretrained reference)."""
        return held_out_top1(recalibrated(model, self.calibration), self.held_out)


def recalibrated(model: nn.Module, calibration: list) -> nn.Module:
    """``model`` channels-last (faster on CPU for depthwise networks), its BatchNorm statistics
    re-estimated on ``calibration`` when there is any, in eval mode."""
    model = model.to(memory_format=torch.channels_last)
    if calibration:
        recalibrate_bn(model, calibration, channels_last=True)
    return model.eval()


def held_out_top1(model: nn.Module, held_out: list) -> float:
    """Top-1 (%) of a ``recalibrated`` model on the held-out batches."""
    return float(evaluate(model, held_out, device="cpu", channels_last=True)["top1"])


def estimator(cfg: Any) -> InheritedAccuracy:
    """An ``InheritedAccuracy`` from an ``ObjectiveConfig``."""
    return InheritedAccuracy(cfg.inherit_from, cfg.data, cfg.img_size, cfg.batch_size, cfg.bn_recalibration,
                             cfg.val_per_class or 10, cfg.seed)
