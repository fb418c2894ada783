"""Classification training: recipe pieces, the ``fit`` loop, evaluation and reporting."""

from .batchnorm import calibration_loader, recalibrate_bn
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig
from .data import (SafeImageFolder, build_transforms, collate_skipping, eval_loader, find_split, set_epoch,
                   train_loader)
from .distill import DistillLoss, kd_loss, load_teacher
from .evaluation import evaluate
from .loop import FitResult, NonFiniteLoss, amp_dtype, fit, train_one_epoch
from .mixing import BatchMixer
from .optim import WarmupCosine, build_optimizer, build_scheduler, param_groups, scaled_lr
from .reporting import CurveLogger

__all__ = [
    "BatchMixer", "CurveLogger", "DistillLoss", "FitResult", "NonFiniteLoss", "SafeImageFolder", "TrainConfig",
    "WarmupCosine", "amp_dtype", "build_optimizer", "build_scheduler", "build_transforms", "calibration_loader", "capture_rng",
    "collate_skipping", "eval_loader", "evaluate", "find_split", "fit", "kd_loss", "load_checkpoint",
    "load_teacher", "param_groups", "recalibrate_bn", "restore_rng", "save_checkpoint", "scaled_lr", "set_epoch", "train_loader",
    "train_one_epoch",
]
