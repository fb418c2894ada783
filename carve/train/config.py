"""``TrainConfig``: every setting of a training run, saved with its checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from carve.config import Config, setting

AUG_PRESETS = ("none", "weak", "medium", "strong")
AMP_MODES = ("none", "bf16", "fp16", "auto")


@dataclass
class TrainConfig(Config):
    """A classification training run (defaults: the lightweight-model recipe, CIFAR-10 at 32 px).

    ``lr`` is for ``base_batch_size`` images per step and is scaled linearly with the effective
    (global) batch size; ``max_steps`` caps the optimizer steps (the schedule then spans them).
    ``bn_recalibration``: short schedules want it, see ``batchnorm``.
    """

    model: Any = setting("mobilenet_v2_100", help="zoo name, spec file/dict, carve weights file or an nn.Module")
    data: str = setting("../shared/data/cifar10", help="image-folder root with train/ and val/ (or test/), or "
                                                       "WebDataset shards (a folder of .tar/.tar.gz or a brace pattern)")
    out_dir: str = setting("runs/train", help="output folder")
    epochs: int = setting(10, ">= 1", help="passes over the training images")
    batch_size: int = setting(128, ">= 1", help="images per step and process")
    lr: float = setting(0.1, "positive", help="learning rate for base_batch_size images per step")
    base_batch_size: int = setting(256, help="batch size lr is given for (0: no scaling)")
    momentum: float = setting(0.9, "in [0, 1)", help="SGD momentum")
    weight_decay: float = setting(4e-5, ">= 0", help="weight decay")
    warmup_epochs: float = setting(1.0, ">= 0", help="linear warmup length in epochs")
    label_smoothing: float = setting(0.1, "in [0, 1)", help="label smoothing")
    mixup_alpha: float = setting(0.0, ">= 0", help="MixUp alpha (0 disables MixUp)")
    cutmix_alpha: float = setting(1.0, ">= 0", help="CutMix alpha (0 disables CutMix)")
    mix_prob: float = setting(0.5, "in [0, 1]", help="probability of mixing a batch")
    switch_prob: float = setting(0.5, "in [0, 1]", help="probability of CutMix rather than MixUp")
    aug: str = setting("weak", choices=AUG_PRESETS, help="augmentation preset")
    ema_decay: float = setting(0.0, "in [0, 1)", help="weight EMA decay (0 disables EMA)")
    amp: str = setting("none", choices=AMP_MODES, help="mixed precision")
    channels_last: bool = setting(False, help="channels_last memory format")
    grad_clip: float = setting(0.0, ">= 0", help="gradient norm clip (0 disables clipping)")
    compile: bool = setting(False, help="torch.compile the model")
    teacher: Any = setting(None, help="distillation teacher: weights file, zoo name or nn.Module")
    kd_alpha: float = setting(0.5, "in [0, 1]", help="weight of the distillation loss")
    kd_temperature: float = setting(4.0, "positive", help="distillation temperature")
    img_size: int = setting(32, ">= 8", help="training and evaluation image size in px")
    small_input: int = setting(0, ">= 0", help="early strides removed (carve.zoo.for_small_images)")
    train_per_class: int = setting(0, ">= 0", help="first N training images per class (0 = all)")
    val_per_class: int = setting(0, ">= 0", help="first N validation images per class (0 = all)")
    val_fraction: float = setting(0.1, "in (0, 1)", help="shards only: share of the samples held out, by key")
    max_steps: int = setting(0, ">= 0", help="cap on optimizer steps (0 = no cap)")
    seed: int = setting(0, help="random seed")
    deterministic: bool = setting(False, help="deterministic algorithms (slower)")
    workers: int = setting(2, ">= 0", help="data loader workers")
    resume: bool | str = setting(False, help="true (the out_dir's last checkpoint) or a checkpoint path")
    overwrite: bool = setting(False, help="replace a run already in out_dir (default: refuse, see docs/reliability.md)")
    pretrained: bool | str = setting(False, help="true, a peer tag or a weights file (as create_model)")
    device: str = setting("auto", help="auto, cpu or cuda[:N]")
    drop_rate: float | None = setting(None, "in [0, 1)", help="classifier dropout (default: the model's)")
    drop_path_rate: float | None = setting(None, "in [0, 1)", help="stochastic depth (default: the model's)")
    sync_bn: bool = setting(False, help="SyncBatchNorm under DDP")
    bn_recalibration: int = setting(0, ">= 0", help="batches re-estimating BatchNorm statistics before each "
                                                    "evaluation (0 = off)")
    lr_scale: dict[str, float] = setting(default_factory=dict, help="learning-rate multipliers by parameter-name "
                                                                   "prefix (longest match wins)")
    eval_every: int = setting(1, ">= 1", help="evaluate every N epochs")
    progress: bool = setting(True, help="progress bars")
    tensorboard: bool = setting(True, help="TensorBoard logs")
    extra: dict = setting(default_factory=dict, help="free-form notes stored with the config")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
