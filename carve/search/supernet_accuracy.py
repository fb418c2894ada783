"""The ``supernet`` accuracy estimator: a candidate is a sub-network of a trained supernet, with its weights.

The candidate is extracted from ``ObjectiveConfig.supernet`` (``carve.zoo.extract``: an ordinary
carve model holding the supernet's slices), its BatchNorm statistics are re-estimated on a few
hundred of the user's training images, and its top-1 on held-out images is the estimate (Once-for-
All and BigNAS score sub-networks the same way). It mirrors ``inherited`` (and scores with its
functions, channels-last), whose source is one pretrained model instead of a supernet. The candidates keep the supernet's classifier, so the
data must be labelled with the supernet's classes (its training data or a subset); other data is
refused with a ``ValueError`` naming ``objective.data``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from carve.train import calibration_loader, eval_loader
from carve.train.data import classes_of
from carve.zoo import ArchSpec
from carve.zoo.supernet import Supernet, extract, load_supernet

from .inherited import held_out_top1, recalibrated


class SupernetAccuracy:
    """Held-out top-1 of sub-networks of ``supernet`` (a file, a tag such as ``carve:tiny-imagenet``, or a
    ``Supernet``); the supernet and the data are read once, then reused."""

    def __init__(self, supernet: str | Supernet, data: str, img_size: int, batch_size: int = 64,
                 calibration_batches: int = 8, val_per_class: int = 10, seed: int = 0):
        self.supernet = (supernet if isinstance(supernet, Supernet) else load_supernet(supernet)).eval()
        held_out = eval_loader(data, img_size, batch_size, per_class=val_per_class, workers=0)
        classes = len(classes_of(held_out))
        if classes != self.supernet.spec.head.num_classes:
            raise ValueError(f"objective.data: {data} has {classes} classes, the supernet predicts "
                             f"{self.supernet.spec.head.num_classes}: score its sub-networks on data labelled with "
                             f"its own classes (its training set or a subset of it)")
        self.held_out = list(held_out)
        self.calibration = list(calibration_loader(data, img_size, batch_size, max(1, calibration_batches),
                                                   seed=seed)) if calibration_batches else []

    def model(self, spec: ArchSpec) -> nn.Module:
        """The candidate with the supernet's weights and its BatchNorm statistics re-estimated, in eval mode."""
        return recalibrated(extract(self.supernet, spec), self.calibration)

    def __call__(self, spec: ArchSpec) -> float:
        return self.score_model(extract(self.supernet, spec))

    def score_model(self, model: nn.Module) -> float:
        """The same estimate for a model with weights of its own (a pretrained reference)."""
        return held_out_top1(recalibrated(model, self.calibration), self.held_out)


def estimator(cfg: Any) -> SupernetAccuracy:
    """A ``SupernetAccuracy`` from an ``ObjectiveConfig``."""
    if not cfg.supernet:
        raise ValueError("objective.supernet: accuracy='supernet' needs the supernet (a weights file or a tag)")
    return SupernetAccuracy(cfg.supernet, cfg.data, cfg.img_size, cfg.batch_size, cfg.bn_recalibration,
                            cfg.val_per_class or 10, cfg.seed)
