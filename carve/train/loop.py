"""``fit``: the classification training loop (reads like torchvision's reference train.py)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from carve.files import claim_run_dir

from . import ddp
from .batchnorm import calibration_loader, recalibrate_bn
from .config import TrainConfig
from .data import SkipCounter, classes_of, eval_loader, set_epoch, train_loader
from .distill import DistillLoss, load_teacher
from .engine import (LoopState, LossFn, amp_dtype, epoch_row, memory_format, plan_schedule, resume, run_epoch, save,
                     seed_everything)
from .evaluation import evaluate
from .mixing import BatchMixer
from .optim import build_optimizer, build_scheduler, scaled_lr
from .reporting import CurveLogger

log = logging.getLogger("carve.train")
CHECKPOINT_KIND = "train"
RUN_FILES = ("last.pt", "best.pt", "final.safetensors")  # a folder holding one of them holds a run


@dataclass
class FitResult:
    model: nn.Module
    spec: Any
    best_top1: float
    final_top1: float
    history: list[dict] = field(default_factory=list)
    best_path: Path | None = None
    last_path: Path | None = None
    out_dir: Path | None = None
    images_per_s: float = 0.0
    wall_s: float = 0.0
    images_per_cpu_s: float = 0.0
    final_ema_top1: float | None = None
    skipped_images: int = 0
    effective_batch_size: int = 0
    lr: float = 0.0


def classification_loss(model: nn.Module, criterion: nn.Module, mixer: BatchMixer, state: LoopState,
                        teacher: nn.Module | None = None, skips: SkipCounter | None = None,
                        channels_last: bool = False) -> LossFn:
    """The loss of one ``(images, targets, skipped)`` batch: mixed targets, optional KD teacher."""
    layout = memory_format(channels_last)

    def loss_of(batch: Any) -> tuple[torch.Tensor, int, dict] | None:
        images, targets, skipped = batch
        if skips is not None:
            skips.add(skipped)
        if images.numel() == 0:
            return None
        images = images.to(state.device, non_blocking=True, memory_format=layout)
        targets = targets.to(state.device, non_blocking=True)
        images, soft_targets = mixer(images, targets)
        with state.autocast():
            logits = model(images)
            if teacher is None:
                loss = criterion(logits, soft_targets)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(images)
                loss = criterion(logits, soft_targets, teacher_logits)
        return loss, images.shape[0], {}

    return loss_of


def train_one_epoch(state: LoopState, model: nn.Module, loader: Any, loss_fn: LossFn) -> dict[str, float]:
    """One classification epoch (``engine.run_epoch``); the point tests and callers hook into."""
    return run_epoch(state, model, loader, loss_fn)


def build_model(config: TrainConfig, num_classes: int, model: nn.Module | None = None) -> nn.Module:
    """The zoo model of ``config``, or the module given (``model``, else ``config.model`` when it is
    one), checked to predict ``num_classes``."""
    from carve.zoo import create_model

    if model is None and isinstance(config.model, nn.Module):
        if config.small_input or config.pretrained:
            raise ValueError("TrainConfig.small_input/pretrained: apply to zoo models only; edit the module yourself")
        model = config.model
    if model is not None:
        with torch.no_grad():
            classes = model.eval()(torch.zeros(1, 3, config.img_size, config.img_size)).shape[-1]
        if classes != num_classes:
            raise ValueError(f"TrainConfig.model: the module predicts {classes} classes, the data has {num_classes}")
        return model
    return create_model(config.model, pretrained=config.pretrained, num_classes=num_classes,
                        small_input=config.small_input, drop_rate=config.drop_rate,
                        drop_path_rate=config.drop_path_rate)


def fit(config: TrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None,
        model: nn.Module | None = None, frozen_base: dict[str, Any] | None = None) -> FitResult:
    """Train ``config.model`` on ``config.data``; write checkpoints, curves and weights to ``out_dir``.

    ``model``: a module prepared by the caller (e.g. a new head and frozen stages for transfer)
    trained instead of building ``config.model``, which then only names it. ``on_epoch`` is called on the main process with each epoch's history row once its checkpoint
    is written (early-stopping schedulers such as Ray's ASHA report from it). ``frozen_base``: the
    identity of the frozen base ``model`` trains on (LoRA, adapters; see ``engine.LoopState``):
    checkpoints then hold only the trainable state, and the weights files (best/final.safetensors)
    are the caller's to write.
    """
    from carve.zoo import ArchSpec, check_input_size, save_weights

    wall_start = time.perf_counter()
    out_dir = claim_run_dir(config.out_dir, config.resume, config.overwrite, RUN_FILES)
    dist = ddp.setup(config.device)
    device, main = dist.device, dist.is_main
    last_path, best_ckpt = out_dir / "last.pt", out_dir / "best.pt"
    best_weights = out_dir / "best.safetensors"
    seed_everything(config.seed, config.deterministic)

    # Data
    train_dl = train_loader(config.data, config.img_size, config.batch_size, config.aug, config.train_per_class,
                            config.workers, config.seed, dist.rank, dist.world_size, config.val_fraction)
    classes = classes_of(train_dl)  # one class list, the training split's, labels every split
    num_classes = len(classes)
    val_dl = eval_loader(config.data, config.img_size, config.batch_size, config.val_per_class, config.workers,
                         dist.rank, dist.world_size, val_fraction=config.val_fraction, classes=classes)
    calib_dl = None
    if config.bn_recalibration:
        calib_dl = calibration_loader(config.data, config.img_size, config.batch_size, config.bn_recalibration,
                                      config.train_per_class, config.seed, config.val_fraction)

    # Model (same initial weights on every rank: seeded identically)
    model = build_model(config, num_classes, model)
    spec = getattr(model, "spec", None)
    if isinstance(spec, ArchSpec):
        check_input_size(spec, config.img_size, "img_size")
    name = spec.name if spec is not None else type(model).__name__
    if config.sync_bn and dist.enabled:
        model = ddp.convert_sync_batchnorm(model, device)
    model.to(device, memory_format=memory_format(config.channels_last))
    unwrapped = model
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_model = torch.compile(model) if config.compile else model
    ema = None
    if config.ema_decay > 0:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(unwrapped, decay=config.ema_decay)

    # Recipe
    global_batch = config.batch_size * dist.world_size
    lr = scaled_lr(config.lr, global_batch, config.base_batch_size)
    steps_per_epoch = len(train_dl)
    total_steps, epochs = plan_schedule(config.epochs, steps_per_epoch, config.max_steps)
    optimizer = build_optimizer(unwrapped, lr, config.momentum, config.weight_decay, lr_scale=config.lr_scale)
    scheduler = build_scheduler(optimizer, total_steps, round(config.warmup_epochs * steps_per_epoch))
    state = LoopState(unwrapped, optimizer, scheduler, device, total_steps, amp=amp_dtype(config.amp, device),
                      grad_clip=config.grad_clip, ema=ema, distributed=dist.enabled, progress=config.progress and main,
                      checkpoint_path=last_path, trainable_only=frozen_base is not None, base=frozen_base)
    weights_files = main and frozen_base is None
    label_loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    teacher = None
    criterion: nn.Module = label_loss
    if config.teacher:
        teacher = load_teacher(config.teacher, num_classes, config.small_input, pretrained=True).to(
            device, memory_format=memory_format(config.channels_last))
        criterion = DistillLoss(label_loss, config.kd_alpha, config.kd_temperature)
    mixer = BatchMixer(num_classes, config.mixup_alpha, config.cutmix_alpha, config.mix_prob, config.switch_prob)
    skips = SkipCounter()
    loss_fn = classification_loss(train_model, criterion, mixer, state, teacher, skips, config.channels_last)

    # Resume
    if config.resume:
        path = last_path if config.resume is True else Path(config.resume)
        resume(state, path, CHECKPOINT_KIND, dist.rank)
        if main:
            log.info("resumed from %s at epoch %d, step %d", path, state.epoch, state.step)
    elif dist.rank:
        torch.manual_seed(config.seed + dist.rank)  # different augmentations per rank

    curves = CurveLogger(out_dir, config.tensorboard, resume_epoch=state.epoch if config.resume else 0) if main else None
    if main:
        log.info("%s: %d classes, %d train / %d val images, effective batch %d (%d x %d processes), lr %.4g "
                 "(%.4g per %d images), %d steps", name, num_classes, len(train_dl.dataset),
                 len(val_dl.dataset) * dist.world_size, global_batch, config.batch_size, dist.world_size, lr,
                 config.lr, config.base_batch_size, total_steps)

    train_images = train_seconds = train_cpu_seconds = 0.0
    metrics: dict[str, Any] = {}
    for epoch in range(state.epoch, epochs):
        set_epoch(train_dl, epoch, config.seed)
        stats = train_one_epoch(state, train_model, train_dl, loss_fn)
        train_images += stats["images"]
        train_seconds += stats["seconds"]
        train_cpu_seconds += stats["cpu_seconds"]
        row = epoch_row(state, stats)
        improved = False
        if epoch + 1 == epochs or (epoch + 1) % config.eval_every == 0:
            if calib_dl is not None:
                for net in [unwrapped] + ([ema.module] if ema is not None else []):
                    recalibrate_bn(net, calib_dl, device, config.channels_last)
            metrics = evaluate(unwrapped, val_dl, device=device, amp_dtype=state.amp, channels_last=config.channels_last)
            row.update(val_loss=metrics["loss"], top1=metrics["top1"], top5=metrics["top5"])
            candidates = [(metrics["top1"], unwrapped, "model")]
            if ema is not None:
                ema_metrics = evaluate(ema.module, val_dl, device=device, amp_dtype=state.amp,
                                       channels_last=config.channels_last)
                row.update(ema_top1=ema_metrics["top1"], ema_top5=ema_metrics["top5"])
                candidates.append((ema_metrics["top1"], ema.module, "ema"))
            top1, best_model, which = max(candidates, key=lambda c: c[0])
            improved = top1 > state.best
            state.best = max(state.best, top1)
        state.history.append(row)
        if main and improved and weights_files:  # before the checkpoint: a checkpoint never records a best that is not on disk
            save_weights(best_model, best_weights, dict(top1=top1, epoch=epoch + 1, weights=which,
                                                        data=str(config.data), classes=classes), spec=spec)
        save(state, CHECKPOINT_KIND, [last_path, best_ckpt] if improved else [last_path], config=config.to_dict(),
             spec=spec.to_dict() if spec is not None else None)
        if main:
            curves.log(row)
            curves.plot(name)
            log.info("epoch %d/%d: loss %.4f top-1 %s lr %.4g %.0f img/s", epoch + 1, epochs, row["train_loss"],
                     f"{row['top1']:.2f}" if "top1" in row else "-", row["lr"], row["images_per_s"])
            if on_epoch is not None:
                on_epoch(dict(row))
        ddp.barrier()

    if not metrics:  # resumed a finished run: nothing trained, still report where it stands
        metrics = evaluate(unwrapped, val_dl, device=device, amp_dtype=state.amp, channels_last=config.channels_last)
    if main:
        final = dict(top1=metrics.get("top1"), top5=metrics.get("top5"), epochs=epochs, data=str(config.data),
                     classes=classes)
        if weights_files:
            save_weights(unwrapped, out_dir / "final.safetensors", final, spec=spec)
        curves.close()
    history = state.history
    ema_top1 = history[-1].get("ema_top1") if history else None
    return FitResult(model=unwrapped, spec=spec, best_top1=state.best, final_top1=metrics.get("top1", float("nan")),
                     history=history, best_path=best_weights if best_weights.exists() else None,
                     last_path=last_path, out_dir=out_dir,
                     images_per_s=train_images / max(train_seconds, 1e-9),
                     wall_s=time.perf_counter() - wall_start,
                     images_per_cpu_s=train_images / max(train_cpu_seconds, 1e-9), final_ema_top1=ema_top1,
                     skipped_images=skips.count, effective_batch_size=global_batch, lr=lr)
