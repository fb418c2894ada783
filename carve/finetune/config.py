"""The settings of a detection and of a classification finetuning run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from carve.train import TrainConfig

from .heads import HEADS


@dataclass
class DetectConfig:
    """A detection finetuning run.

    ``backbone``: zoo name, spec file or carve weights file; ``pretrained``: as ``create_model``
    (False, True, a peer tag or a weights file). ``data``: COCO JSON / COCO root / YOLO root
    (``open_dataset``). Validation: ``val_data`` if given, else ``val_fraction`` of the images split
    off by image id with ``split_seed``; ``train_ids``/``val_ids`` pin the split (e.g. the same ids for
    an overfitting check). ``freeze``: none, stem, all or N stages; ``backbone_lr_mult`` scales the
    backbone's LR; ``augment``: full (SSD: photometric, zoom-out, IoU crop, flip; others: flip),
    flip or none. ``amp``: none, bf16, fp16 or auto. ``resume``: True (out_dir/last.pt) or a path.
    """

    backbone: Any = "carve_100"
    head: str = "ssdlite"
    data: str = "../shared/data/coco128"
    out_dir: str = "runs/detect"
    data_format: str = "auto"
    split: str | None = None
    val_data: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    train_ids: list[int] | None = None
    val_ids: list[int] | None = None
    pretrained: Any = False
    img_size: int = 320
    epochs: int = 20
    max_steps: int = 0
    batch_size: int = 8
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_epochs: float = 1.0
    backbone_lr_mult: float = 1.0
    freeze: Any = "none"
    frozen_bn: bool = False
    augment: str = "full"
    amp: str = "none"
    grad_clip: float = 0.0
    fpn_channels: int = 256
    expansion_tap: bool = True
    seed: int = 0
    workers: int = 0
    resume: Any = False
    eval_every: int = 1
    device: str = "cpu"
    progress: bool = True
    tensorboard: bool = True
    examples: int = 6
    example_score: float = 0.3

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"DetectConfig.{name}: expected {expected}, got {getattr(self, name)!r}")

        need(self.head in HEADS, "head", f"one of {list(HEADS)}")
        need(self.epochs >= 1, "epochs", "an integer >= 1")
        need(self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(self.lr > 0, "lr", "a positive number")
        need(self.img_size >= 32, "img_size", "an integer >= 32")
        need(self.backbone_lr_mult >= 0, "backbone_lr_mult", "a number >= 0")
        need(self.augment in ("full", "flip", "none"), "augment", "full, flip or none")
        need(self.amp in ("none", "bf16", "fp16", "auto"), "amp", "none, bf16, fp16 or auto")
        need(0 < self.val_fraction < 1, "val_fraction", "a number in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backbone"] = d["backbone"] if isinstance(d["backbone"], (str, dict)) else str(d["backbone"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"DetectConfig: unknown fields {unknown}")
        return cls(**data)


@dataclass
class ClassifyConfig(TrainConfig):
    """A classification transfer run: ``TrainConfig``'s recipe training a new classifier on
    ``model``'s (pretrained) body over an image folder with ``train/`` and ``val/`` (or ``test/``).

    ``freeze``: none, stem, all or N stages (the head always trains); ``backbone_lr_mult`` scales
    every non-head parameter's learning rate; ``frozen_bn`` freezes all BatchNorm layers of the body.
    """

    model: Any = "carve_100"
    out_dir: str = "runs/classify"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    base_batch_size: int = 0
    warmup_epochs: float = 0.5
    cutmix_alpha: float = 0.0
    freeze: Any = "none"
    backbone_lr_mult: float = 0.1
    frozen_bn: bool = False

    def validate(self) -> None:
        super().validate()
        if not self.backbone_lr_mult >= 0:
            raise ValueError(f"ClassifyConfig.backbone_lr_mult: expected a number >= 0, got {self.backbone_lr_mult!r}")
