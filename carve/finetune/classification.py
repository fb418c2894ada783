"""Classification transfer: a zoo backbone with a new classifier on an ImageFolder dataset.

Built from carve.train's pieces (loaders, ``train_one_epoch``, ``evaluate``, optimizer with
per-prefix LR, schedule, checkpoints, curves); what it adds is the freezing policy and the lower
backbone learning rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbone import freeze_bn, freeze_stages, thaw_bn
from .config import ClassifyConfig

HEAD_PREFIXES = ("head_fc.", "classifier.")


@dataclass
class ClassifyResult:
    top1: float
    top5: float
    history: list[dict]
    out_dir: Path
    weights: Path
    frozen_params: int
    trainable_params: int
    wall_s: float
    model: nn.Module


def classify(config: ClassifyConfig) -> ClassifyResult:
    """Finetune ``config.backbone`` with a new classifier on ``config.data``; return val top-1/top-5."""
    from carve.train import (BatchMixer, CurveLogger, build_optimizer, build_scheduler, evaluate, save_checkpoint,
                             set_epoch, train_one_epoch)
    from carve.train.data import SkipCounter, eval_loader, num_classes_of, train_loader
    from carve.train.loop import amp_dtype, seed_everything
    from carve.zoo import create_model, save_weights

    wall = time.perf_counter()
    out_dir = Path(config.out_dir)
    device = torch.device(config.device)
    seed_everything(config.seed)
    train_dl = train_loader(config.data, config.img_size, config.batch_size, config.aug, config.train_per_class,
                            config.workers, config.seed)
    val_dl = eval_loader(config.data, config.img_size, config.batch_size, config.val_per_class, config.workers)
    num_classes = num_classes_of(train_dl)
    model = create_model(config.backbone, pretrained=config.pretrained, num_classes=num_classes,
                         small_input=config.small_input)
    model.reset_classifier(num_classes)  # a fresh head even when the class count matches
    frozen = freeze_stages([nn.ModuleList([model.stem, model.stem_pool]), *model.blocks], config.freeze)
    if config.frozen_bn:
        for part in (model.stem, model.blocks, model.head_conv):
            freeze_bn(part)
    model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    steps_per_epoch = len(train_dl)
    total = config.epochs * steps_per_epoch
    total = min(total, config.max_steps) if config.max_steps else total
    body = [n.split(".")[0] + "." for n, _ in model.named_parameters() if not n.startswith(HEAD_PREFIXES)]
    lr_scale = {p: config.backbone_lr_mult for p in dict.fromkeys(body)}
    optimizer = build_optimizer(model, config.lr, config.momentum, config.weight_decay, nesterov=True, lr_scale=lr_scale)
    scheduler = build_scheduler(optimizer, total, round(config.warmup_epochs * steps_per_epoch))
    dtype = amp_dtype(config.amp, device)
    ctx: dict[str, Any] = dict(device=device, amp=dtype, scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
                               ema=None, teacher=None, grad_clip=0.0, channels_last=False, step=0, total_steps=total,
                               unwrapped=model, skips=SkipCounter(), progress=config.progress,
                               last_path=out_dir / "last.pt")
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    mixer = BatchMixer(num_classes)
    curves = CurveLogger(out_dir, config.tensorboard)
    history, metrics = [], {}
    for epoch in range(math.ceil(total / steps_per_epoch)):
        set_epoch(train_dl, epoch, config.seed)
        stats = train_one_epoch(model, criterion, optimizer, scheduler, train_dl, mixer, ctx, epoch)
        metrics = evaluate(model, val_dl, device=device, amp_dtype=dtype)
        row = dict(epoch=epoch + 1, step=ctx["step"], lr=optimizer.param_groups[0]["lr"], train_loss=stats["train_loss"],
                   val_loss=metrics["loss"], top1=metrics["top1"], top5=metrics["top5"], epoch_s=stats["seconds"],
                   images_per_s=stats["images"] / max(stats["seconds"], 1e-9))
        history.append(row)
        curves.log(row)
        curves.plot(f"{model.spec.name} transfer")
        save_checkpoint(out_dir / "last.pt", dict(format="carve-classify-1", model=model.state_dict(), epoch=epoch + 1,
                                                  history=history, config=asdict(config) | dict(backbone=str(config.backbone)),
                                                  spec=model.spec.to_dict()))
    curves.close()
    thaw_bn(model, model.spec.norm.momentum)  # plain BatchNorm again, so the weights load into CarveNet
    weights = save_weights(model, out_dir / "final.safetensors", dict(top1=metrics["top1"], data=str(config.data)))
    return ClassifyResult(top1=metrics["top1"], top5=metrics["top5"], history=history, out_dir=out_dir,
                          weights=weights, frozen_params=frozen, trainable_params=trainable,
                          wall_s=time.perf_counter() - wall, model=model)
