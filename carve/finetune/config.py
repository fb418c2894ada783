"""The settings of a detection and of a classification finetuning run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carve.config import Config, setting
from carve.train.config import AMP_MODES, TrainConfig

from .heads import HEADS
from .peft_options import SYNTAX, PeftSettings, parse_peft
from .sources import FORMATS
from .transforms import AUGMENT_LEVELS

FREEZE_HELP = "none, stem, all or N stages"
PEFT_HELP = f"parameter-efficient transfer on the frozen backbone: {SYNTAX} (default: none, every weight trains)"


def checked_peft(config: Config) -> PeftSettings | None:
    """The config's ``peft`` parsed; a bad string raises ``ConfigError`` naming ``<Config>.peft``."""
    try:
        return parse_peft(config.peft, "")
    except ValueError as exc:
        raise config.error("peft", str(exc).removeprefix(": ")) from None


@dataclass
class DetectConfig(Config):
    """A detection finetuning run.

    Validation: ``val_data`` and/or ``val_split`` if given, else ``val_fraction`` of the images split off by image id
    with ``split_seed``; ``train_ids``/``val_ids`` pin the split (e.g. the same ids for an
    overfitting check). ``augment``: full (SSD: photometric, zoom-out, IoU crop, flip; others:
    flip), flip or none.
    """

    backbone: Any = setting("carve_100", help="zoo name, spec file or carve weights file")
    head: str = setting("ssdlite", choices=HEADS, help="detection head")
    data: str = setting("../shared/data/coco128", help="COCO JSON / COCO root / YOLO root")
    out_dir: str = setting("runs/detect", help="output folder")
    data_format: str = setting("auto", choices=FORMATS, help="annotation format")
    split: str | None = setting(None, help="dataset split name (default: the dataset's own)")
    val_data: str | None = setting(None, help="separate validation dataset (default: split data)")
    val_split: str | None = setting(None, help="validation split name of val_data (or of data when val_data is "
                                               "not set), e.g. VOC's val")
    val_fraction: float = setting(0.2, "in (0, 1)", help="share of images held out, by image id")
    split_seed: int = setting(0, help="seed of the train/validation split")
    train_ids: list[int] | None = setting(None, help="image ids of the training split")
    val_ids: list[int] | None = setting(None, help="image ids of the validation split")
    pretrained: bool | str = setting(False, help="true, a peer tag (torchvision, timm:...) or a weights file")
    img_size: int = setting(320, ">= 32", help="input size in px")
    epochs: int = setting(20, ">= 1", help="passes over the training images")
    max_steps: int = setting(0, ">= 0", help="cap on optimizer steps (0 = none)")
    batch_size: int = setting(8, ">= 1", help="images per step")
    lr: float = setting(0.02, "positive", help="learning rate")
    momentum: float = setting(0.9, "in [0, 1)", help="SGD momentum")
    weight_decay: float = setting(4e-5, ">= 0", help="weight decay")
    warmup_epochs: float = setting(1.0, ">= 0", help="linear warmup length in epochs")
    backbone_lr_mult: float = setting(1.0, ">= 0", help="scales the backbone's learning rate")
    freeze: str | int = setting("none", help=FREEZE_HELP)
    frozen_bn: bool = setting(False, help="freeze every backbone BatchNorm")
    augment: str = setting("full", choices=AUGMENT_LEVELS, help="training augmentation")
    amp: str = setting("none", choices=AMP_MODES, help="mixed precision")
    channels_last: bool = setting(False, help="channels_last weights (faster on CPU for depthwise backbones)")
    grad_clip: float = setting(0.0, ">= 0", help="gradient norm clip (0 = none)")
    fpn_channels: int = setting(256, ">= 1", help="FPN width (two-stage and FPN heads)")
    expansion_tap: bool = setting(True, help="SSDLite: tap the stride-16 expansion, not the block output")
    seed: int = setting(0, help="random seed")
    workers: int = setting(0, ">= 0", help="data loader workers")
    resume: bool | str = setting(False, help="true (out_dir/last.pt) or a checkpoint path")
    overwrite: bool = setting(False, help="replace a run already in out_dir (default: refuse, see docs/reliability.md)")
    eval_every: int = setting(1, ">= 1", help="evaluate every N epochs")
    bn_recalibration: int = setting(20, ">= 0", help="batches of training images (not augmented) that re-estimate "
                                                    "the BatchNorm statistics before each evaluation (0 = off)")
    device: str = setting("cpu", help="cpu or cuda[:N]")
    progress: bool = setting(True, help="progress bars")
    tensorboard: bool = setting(True, help="TensorBoard logs")
    examples: int = setting(6, ">= 0", help="images in examples.png (0 = none)")
    example_score: float = setting(0.3, "in [0, 1]", help="score threshold of the drawn detections")
    peft: str | None = setting(None, help=PEFT_HELP)

    def check(self) -> None:
        self.peft_settings()

    def peft_settings(self) -> PeftSettings | None:
        """The typed ``peft`` settings (None: the whole detector trains)."""
        return checked_peft(self)


@dataclass
class ClassifyConfig(TrainConfig):
    """A classification transfer run: ``TrainConfig``'s recipe training a new classifier on
    ``model``'s (pretrained) body over an image folder with ``train/`` and ``val/`` (or ``test/``)."""

    model: Any = "carve_100"
    out_dir: str = "runs/classify"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    base_batch_size: int = 0
    warmup_epochs: float = 0.5
    cutmix_alpha: float = 0.0
    freeze: str | int = setting("none", help="none, stem, all or N stages (the head always trains), or linear: "
                                             "only the new classifier trains (a linear probe)")
    backbone_lr_mult: float = setting(0.1, ">= 0", help="scales every non-head parameter's learning rate")
    frozen_bn: bool = setting(False, help="freeze all BatchNorm layers of the body")
    peft: str | None = setting(None, help=PEFT_HELP)
    bn_recalibration: int = setting(20, ">= 0", help="batches of training images (not augmented) that re-estimate "
                                                     "the BatchNorm statistics before each evaluation (0 = off): a "
                                                     "short finetune leaves them describing the pretraining data")

    def check(self) -> None:
        super().check()
        self.peft_settings()

    def peft_settings(self) -> PeftSettings | None:
        """The typed ``peft`` settings (None: every weight trains)."""
        return checked_peft(self)
