"""Classification training: recipe pieces, the ``fit`` loop, evaluation and reporting."""

from .batchnorm import calibration_loader, recalibrate_bn
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig
from .data import (SafeImageFolder, build_transforms, collate_skipping, eval_loader, find_split, set_epoch,
                   train_loader)
from .distill import DistillLoss, kd_loss, load_teacher
from .engine import LoopState, NonFiniteLoss, amp_dtype, plan_schedule, seed_everything
from .evaluation import evaluate
from .loop import FitResult, fit, train_one_epoch
from .mixing import BatchMixer
from .optim import WarmupCosine, build_optimizer, build_scheduler, param_groups, scaled_lr
from .reporting import CurveLogger
from .supernet_training import SupernetFitResult, SupernetTrainConfig, train_supernet

__all__ = [
    "BatchMixer", "CurveLogger", "DistillLoss", "FitResult", "LoopState", "NonFiniteLoss", "SafeImageFolder",
    "TrainConfig", "WarmupCosine", "amp_dtype", "build_optimizer", "build_scheduler", "build_transforms",
    "calibration_loader", "capture_rng", "collate_skipping", "eval_loader", "evaluate", "find_split", "fit", "kd_loss",
    "load_checkpoint", "load_teacher", "param_groups", "plan_schedule", "recalibrate_bn", "restore_rng",
    "save_checkpoint", "scaled_lr", "seed_everything", "set_epoch", "train_loader", "train_one_epoch",
    "SupernetFitResult", "SupernetTrainConfig", "train_supernet",
]
