"""``TrainConfig``: every setting of a training run, saved with its checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

AUG_PRESETS = ("none", "weak", "medium", "strong")
AMP_MODES = ("none", "bf16", "fp16", "auto")


@dataclass
class TrainConfig:
    """A classification training run (defaults: the lightweight-model recipe, CIFAR-10 at 32 px).

    ``model`` is a zoo name, spec file/dict, carve weights file or an ``nn.Module`` (e.g. a peer's); ``data`` an image-folder root
    with ``train/`` and ``val/`` (or ``test/``). ``small_input`` removes that many early strides
    (``carve.zoo.for_small_images``). ``lr`` is for ``base_batch_size`` images per step and is
    scaled linearly with the effective (global) batch size. ``max_steps`` caps the optimizer steps
    (the schedule then spans them); ``train_per_class``/``val_per_class`` take the first N images
    of each class. ``data`` may also be a set of WebDataset shards (a folder of ``.tar``/``.tar.gz``
    files or a brace pattern), streamed; ``val_fraction`` of their samples, chosen by key, are held out. ``resume``: True (the out_dir's last checkpoint) or a checkpoint path.
    ``bn_recalibration``: batches of training images over which BatchNorm statistics are
    re-estimated before each evaluation (0: off; short schedules want it, see ``batchnorm``).
    ``lr_scale``: learning-rate multipliers by parameter-name prefix (longest match wins; e.g. a lower
    rate for a pretrained body when finetuning).
    """

    model: Any = "mobilenet_v2_100"
    data: str = "../shared/data/cifar10"
    out_dir: str = "runs/train"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    base_batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 1.0
    mix_prob: float = 0.5
    switch_prob: float = 0.5
    aug: str = "weak"
    ema_decay: float = 0.0
    amp: str = "none"
    channels_last: bool = False
    grad_clip: float = 0.0
    compile: bool = False
    teacher: Any = None
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    img_size: int = 32
    small_input: int = 0
    train_per_class: int = 0
    val_per_class: int = 0
    val_fraction: float = 0.1
    max_steps: int = 0
    seed: int = 0
    deterministic: bool = False
    workers: int = 2
    resume: Any = False
    pretrained: Any = False
    device: str = "auto"
    drop_rate: float | None = None
    drop_path_rate: float | None = None
    sync_bn: bool = False
    bn_recalibration: int = 0
    lr_scale: dict = field(default_factory=dict)
    eval_every: int = 1
    progress: bool = True
    tensorboard: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field with an unusable value."""
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{type(self).__name__}.{name}: expected {expected}, got {getattr(self, name)!r}")

        need(self.epochs >= 1, "epochs", "an integer >= 1")
        need(self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(self.lr > 0, "lr", "a positive float")
        need(0 <= self.momentum < 1, "momentum", "a float in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "a float >= 0")
        need(self.warmup_epochs >= 0, "warmup_epochs", "a float >= 0")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "a float in [0, 1)")
        need(self.mixup_alpha >= 0, "mixup_alpha", "a float >= 0 (0 disables MixUp)")
        need(self.cutmix_alpha >= 0, "cutmix_alpha", "a float >= 0 (0 disables CutMix)")
        need(0 <= self.mix_prob <= 1, "mix_prob", "a probability in [0, 1]")
        need(0 <= self.switch_prob <= 1, "switch_prob", "a probability in [0, 1]")
        need(self.aug in AUG_PRESETS, "aug", f"one of {AUG_PRESETS}")
        need(0 <= self.ema_decay < 1, "ema_decay", "a float in [0, 1) (0 disables EMA)")
        need(self.amp in AMP_MODES, "amp", f"one of {AMP_MODES}")
        need(self.grad_clip >= 0, "grad_clip", "a float >= 0 (0 disables clipping)")
        need(0 <= self.kd_alpha <= 1, "kd_alpha", "a float in [0, 1] (weight of the distillation loss)")
        need(self.kd_temperature > 0, "kd_temperature", "a positive float")
        need(self.img_size >= 8, "img_size", "an integer >= 8")
        need(self.small_input >= 0, "small_input", "an integer >= 0")
        need(self.train_per_class >= 0, "train_per_class", "an integer >= 0 (0 = all)")
        need(self.val_per_class >= 0, "val_per_class", "an integer >= 0 (0 = all)")
        need(0 < self.val_fraction < 1, "val_fraction", "a fraction in (0, 1)")
        need(self.max_steps >= 0, "max_steps", "an integer >= 0 (0 = no cap)")
        need(self.workers >= 0, "workers", "an integer >= 0")
        need(self.eval_every >= 1, "eval_every", "an integer >= 1")
        need(self.bn_recalibration >= 0, "bn_recalibration", "an integer >= 0 (batches; 0 = off)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (a spec given as an object is stored as its dict)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["extra"] = dict(self.extra)
        data["lr_scale"] = dict(self.lr_scale)
        if hasattr(self.model, "to_dict"):
            data["model"] = self.model.to_dict()
        elif not isinstance(self.model, (str, Path, dict)):
            data["model"] = f"<{type(self.model).__name__} module>"
        if not isinstance(self.teacher, (str, Path, type(None))):
            data["teacher"] = f"<{type(self.teacher).__name__} module>"
        for key in ("data", "out_dir", "teacher", "resume", "pretrained"):
            if isinstance(data[key], Path):
                data[key] = str(data[key])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from plain data; unknown keys raise ValueError listing the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)
