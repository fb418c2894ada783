"""``fit``: the classification training loop (reads like torchvision's reference train.py)."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import ddp
from .batchnorm import calibration_loader, recalibrate_bn
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig
from .data import SkipCounter, eval_loader, num_classes_of, set_epoch, train_loader
from .distill import DistillLoss, load_teacher
from .evaluation import autocast, evaluate
from .mixing import BatchMixer
from .optim import build_optimizer, build_scheduler, scaled_lr
from .reporting import CurveLogger

log = logging.getLogger("carve.train")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """``none`` -> None; ``bf16``/``fp16``; ``auto`` -> bf16 on CPU, bf16 or fp16 on CUDA."""
    if mode == "none":
        return None
    if mode == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, loader: Any, mixer: BatchMixer, ctx: dict[str, Any], epoch: int) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, images seen, wall and process-CPU seconds. ``ctx`` carries the
    device, AMP, scaler, EMA, teacher, clip, step counters and progress settings."""
    from tqdm import tqdm

    model.train()
    device, dtype, scaler, ema, teacher = ctx["device"], ctx["amp"], ctx["scaler"], ctx["ema"], ctx["teacher"]
    memory_format = torch.channels_last if ctx["channels_last"] else torch.contiguous_format
    loss_sum, seen, start, cpu_start = 0.0, 0, time.perf_counter(), time.process_time()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", disable=not ctx["progress"], leave=False, unit="batch")
    for images, targets, skipped in bar:
        ctx["skips"].add(skipped)
        if images.numel() == 0:
            continue
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        images, soft_targets = mixer(images, targets)
        with autocast(device, dtype):
            logits = model(images)
            if teacher is None:
                loss = criterion(logits, soft_targets)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(images)
                loss = criterion(logits, soft_targets, teacher_logits)
        loss_value = loss.item()
        finite = math.isfinite(loss_value)
        if ctx.get("distributed"):  # every rank stops together instead of hanging in the gradient all-reduce
            finite = ddp.all_reduce_sum([0.0 if finite else 1.0], device)[0] == 0
        if not finite:
            what = "non-finite on another process" if math.isfinite(loss_value) else loss_value
            raise NonFiniteLoss(f"loss became {what} at epoch {epoch + 1}, step {ctx['step'] + 1}; stopped. "
                                f"The last good checkpoint is kept: {ctx['last_path']} (lower lr, enable "
                                f"grad_clip, or check the data)")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if ctx["grad_clip"]:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), ctx["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        ctx["step"] += 1
        if ema is not None:
            ema.update(ctx["unwrapped"], step=ctx["step"])
        loss_sum += loss_value * images.shape[0]
        seen += images.shape[0]
        if ctx["progress"]:
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.4f}", refresh=False)
        if ctx["step"] >= ctx["total_steps"]:
            break
    bar.close()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    loss_sum, seen_all = ddp.all_reduce_sum([loss_sum, float(seen)], device)
    return dict(train_loss=loss_sum / max(seen_all, 1), images=seen_all, seconds=seconds, cpu_seconds=cpu_seconds)


def _checkpoint_state(ctx: dict[str, Any], optimizer: Any, scheduler: Any, epoch: int, best_top1: float,
                      history: list[dict], config: TrainConfig, spec: Any) -> dict[str, Any]:
    ema = ctx["ema"]
    return dict(format="carve-train-1", model=ctx["unwrapped"].state_dict(),
                ema=ema.module.state_dict() if ema is not None else None,
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=ctx["scaler"].state_dict(),
                rng=ddp.gather_objects(capture_rng()), epoch=epoch, step=ctx["step"], best_top1=best_top1,
                history=history, spec=spec.to_dict() if spec is not None else None, config=config.to_dict())


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The zoo model of ``config`` (or the ``nn.Module`` given, checked to predict ``num_classes``)."""
    from carve.zoo import create_model

    if isinstance(config.model, nn.Module):
        if config.small_input or config.pretrained:
            raise ValueError("TrainConfig.small_input/pretrained: apply to zoo models only; edit the module yourself")
        with torch.no_grad():
            classes = config.model.eval()(torch.zeros(1, 3, config.img_size, config.img_size)).shape[-1]
        if classes != num_classes:
            raise ValueError(f"TrainConfig.model: the module predicts {classes} classes, the data has {num_classes}")
        return config.model
    return create_model(config.model, pretrained=config.pretrained, num_classes=num_classes,
                        small_input=config.small_input, drop_rate=config.drop_rate,
                        drop_path_rate=config.drop_path_rate)


def fit(config: TrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train ``config.model`` on ``config.data``; write checkpoints, curves and weights to ``out_dir``.

    ``on_epoch`` is called on the main process with each epoch's history row once its checkpoint
    is written (early-stopping schedulers such as Ray's ASHA report from it).
    """
    from carve.zoo import save_weights

    wall_start = time.perf_counter()
    dist = ddp.setup(config.device)
    device, main = dist.device, dist.is_main
    out_dir = Path(config.out_dir)
    last_path, best_ckpt = out_dir / "last.pt", out_dir / "best.pt"
    best_weights = out_dir / "best.safetensors"
    seed_everything(config.seed, config.deterministic)

    # Data
    train_dl = train_loader(config.data, config.img_size, config.batch_size, config.aug, config.train_per_class,
                            config.workers, config.seed, dist.rank, dist.world_size)
    val_dl = eval_loader(config.data, config.img_size, config.batch_size, config.val_per_class, config.workers,
                         dist.rank, dist.world_size)
    num_classes = num_classes_of(train_dl)
    calib_dl = None
    if config.bn_recalibration:
        calib_dl = calibration_loader(config.data, config.img_size, config.batch_size, config.bn_recalibration,
                                      config.train_per_class, config.seed)

    # Model (same initial weights on every rank: seeded identically)
    model = build_model(config, num_classes)
    spec = getattr(model, "spec", None)
    name = spec.name if spec is not None else type(model).__name__
    if config.sync_bn and dist.enabled:
        model = ddp.convert_sync_batchnorm(model, device)
    model.to(device, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
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
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = build_optimizer(unwrapped, lr, config.momentum, config.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps, round(config.warmup_epochs * steps_per_epoch))
    dtype = amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    label_loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    teacher = None
    criterion: nn.Module = label_loss
    if config.teacher:
        teacher = load_teacher(config.teacher, num_classes, config.small_input, pretrained=True).to(device)
        criterion = DistillLoss(label_loss, config.kd_alpha, config.kd_temperature)
    mixer = BatchMixer(num_classes, config.mixup_alpha, config.cutmix_alpha, config.mix_prob, config.switch_prob)
    ctx: dict[str, Any] = dict(device=device, amp=dtype, scaler=scaler, ema=ema, teacher=teacher,
                               grad_clip=config.grad_clip, channels_last=config.channels_last, step=0,
                               total_steps=total_steps, unwrapped=unwrapped, skips=SkipCounter(),
                               progress=config.progress and main, last_path=last_path, distributed=dist.enabled)

    # Resume
    start_epoch, best_top1, history = 0, -1.0, []
    if config.resume:
        path = last_path if config.resume is True else Path(config.resume)
        state = load_checkpoint(path)
        unwrapped.load_state_dict(state["model"])
        if ema is not None and state.get("ema"):
            ema.module.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"][dist.rank] if dist.rank < len(state["rng"]) else state["rng"][0])
        start_epoch, ctx["step"] = state["epoch"], state["step"]
        best_top1, history = state["best_top1"], list(state["history"])
        if main:
            log.info("resumed from %s at epoch %d, step %d", path, start_epoch, ctx["step"])
    elif dist.rank:
        torch.manual_seed(config.seed + dist.rank)  # different augmentations per rank

    curves = CurveLogger(out_dir, config.tensorboard, resume_epoch=start_epoch if config.resume else 0) if main else None
    if main:
        log.info("%s: %d classes, %d train / %d val images, effective batch %d (%d x %d processes), lr %.4g "
                 "(%.4g per %d images), %d steps", name, num_classes, len(train_dl.dataset),
                 len(val_dl.dataset) * dist.world_size, global_batch, config.batch_size, dist.world_size, lr,
                 config.lr, config.base_batch_size, total_steps)

    train_images = train_seconds = train_cpu_seconds = 0.0
    metrics: dict[str, Any] = {}
    for epoch in range(start_epoch, epochs):
        set_epoch(train_dl, epoch, config.seed)
        stats = train_one_epoch(train_model, criterion, optimizer, scheduler, train_dl, mixer, ctx, epoch)
        train_images += stats["images"]
        train_seconds += stats["seconds"]
        train_cpu_seconds += stats["cpu_seconds"]
        last_epoch = epoch + 1 == epochs
        row: dict[str, Any] = dict(epoch=epoch + 1, step=ctx["step"], lr=optimizer.param_groups[0]["lr"],
                                   train_loss=stats["train_loss"], epoch_s=stats["seconds"],
                                   images_per_s=stats["images"] / max(stats["seconds"], 1e-9))
        if last_epoch or (epoch + 1) % config.eval_every == 0:
            if calib_dl is not None:
                for net in [unwrapped] + ([ema.module] if ema is not None else []):
                    recalibrate_bn(net, calib_dl, device, config.channels_last)
            metrics = evaluate(unwrapped, val_dl, device=device, amp_dtype=dtype, channels_last=config.channels_last)
            row.update(val_loss=metrics["loss"], top1=metrics["top1"], top5=metrics["top5"])
            candidates = [(metrics["top1"], unwrapped, "model")]
            if ema is not None:
                ema_metrics = evaluate(ema.module, val_dl, device=device, amp_dtype=dtype,
                                       channels_last=config.channels_last)
                row.update(ema_top1=ema_metrics["top1"], ema_top5=ema_metrics["top5"])
                candidates.append((ema_metrics["top1"], ema.module, "ema"))
            top1, best_model, which = max(candidates, key=lambda c: c[0])
            improved = top1 > best_top1
            best_top1 = max(best_top1, top1)
        else:
            improved = False
        history.append(row)
        state = _checkpoint_state(ctx, optimizer, scheduler, epoch + 1, best_top1, history, config, spec)
        if main:
            save_checkpoint(last_path, state)
            if improved:
                save_checkpoint(best_ckpt, state)
                save_weights(best_model, best_weights, dict(top1=top1, epoch=epoch + 1, weights=which,
                                                            data=str(config.data)), spec=spec)
            curves.log(row)
            curves.plot(name)
            log.info("epoch %d/%d: loss %.4f top-1 %s lr %.4g %.0f img/s", epoch + 1, epochs, row["train_loss"],
                     f"{row['top1']:.2f}" if "top1" in row else "-", row["lr"], row["images_per_s"])
            if on_epoch is not None:
                on_epoch(dict(row))
        ddp.barrier()

    if not metrics:  # resumed a finished run: nothing trained, still report where it stands
        metrics = evaluate(unwrapped, val_dl, device=device, amp_dtype=dtype, channels_last=config.channels_last)
    if main:
        final = dict(top1=metrics.get("top1"), top5=metrics.get("top5"), epochs=epochs, data=str(config.data))
        save_weights(unwrapped, out_dir / "final.safetensors", final, spec=spec)
        curves.close()
    ema_top1 = history[-1].get("ema_top1") if history else None
    return FitResult(model=unwrapped, spec=spec, best_top1=best_top1, final_top1=metrics.get("top1", float("nan")),
                     history=history, best_path=best_weights if best_weights.exists() else None,
                     last_path=last_path, out_dir=out_dir,
                     images_per_s=train_images / max(train_seconds, 1e-9),
                     wall_s=time.perf_counter() - wall_start,
                     images_per_cpu_s=train_images / max(train_cpu_seconds, 1e-9), final_ema_top1=ema_top1,
                     skipped_images=ctx["skips"].count, effective_batch_size=global_batch, lr=lr)
