"""The optimisation loop's shared pieces: its typed state, one optimizer step, one epoch, checkpoint and resume.

``fit`` (classification), ``carve.finetune``'s classification transfer and detection all train
through these, so they share one step (AMP, gradient clipping, EMA, the non-finite-loss stop), one
checkpoint layout and one exact resume.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from . import ddp
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .evaluation import autocast


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class LoopState:
    """What the loop carries from step to step and what a checkpoint restores.

    ``model`` is the unwrapped module (what is saved); ``epoch`` counts finished epochs; ``best``
    is the best validation figure so far (top-1, AP, ...); ``history`` one row per finished epoch.
    ``trainable_only``: the model trains on a frozen base (LoRA, adapters); checkpoints then hold only
    its :func:`trainable_state` and ``base``, the frozen base's identity, which resume checks.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device
    total_steps: int
    amp: torch.dtype | None = None
    grad_clip: float = 0.0
    ema: Any = None
    distributed: bool = False
    progress: bool = True
    checkpoint_path: Path | None = None
    trainable_only: bool = False
    base: dict[str, Any] | None = None
    scaler: torch.amp.GradScaler = field(init=False)
    step: int = 0
    epoch: int = 0
    best: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    def autocast(self) -> Any:
        return autocast(self.device, self.amp)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """``none`` -> None; ``bf16``/``fp16``; ``auto`` -> bf16 on CPU, bf16 or fp16 on CUDA."""
    if mode == "none":
        return None
    if mode == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def memory_format(channels_last: bool) -> torch.memory_format:
    """The layout a model's weights and images train in (channels-last: faster CPU convolutions for
    depthwise networks, the same function up to the order of floating-point sums)."""
    return torch.channels_last if channels_last else torch.contiguous_format


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# a batch -> (loss, images in it, extra loss terms to average), or None to skip the batch
LossFn = Callable[[Any], "tuple[torch.Tensor, int, dict[str, torch.Tensor]] | None"]


def plan_schedule(epochs: int, steps_per_epoch: int, max_steps: int = 0) -> tuple[int, int]:
    """(total optimizer steps, epochs they span): ``epochs`` full epochs, capped at ``max_steps`` when set."""
    if steps_per_epoch < 1:
        raise ValueError("the training data yields no full batch: lower batch_size or add images")
    total = epochs * steps_per_epoch
    if max_steps:
        total = min(total, max_steps)
    return total, math.ceil(total / steps_per_epoch)


def optimizer_step(state: LoopState, loss: torch.Tensor) -> float:
    """Backward, clip, step the optimizer, scheduler and EMA; stop with ``NonFiniteLoss`` on NaN/inf."""
    value = loss.item()
    finite = math.isfinite(value)
    if state.distributed:  # every rank stops together instead of hanging in the gradient all-reduce
        finite = ddp.all_reduce_sum([0.0 if finite else 1.0], state.device)[0] == 0
    if not finite:
        what = "non-finite on another process" if math.isfinite(value) else value
        raise NonFiniteLoss(f"loss became {what} at epoch {state.epoch + 1}, step {state.step + 1}; stopped. "
                            f"The last good checkpoint is kept: {state.checkpoint_path} (lower lr, enable "
                            f"grad_clip, or check the data)")
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if state.grad_clip:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), state.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.step += 1
    if state.ema is not None:
        state.ema.update(state.model, step=state.step)
    return value


def run_epoch(state: LoopState, model: nn.Module, loader: Iterable, loss_fn: LossFn) -> dict[str, float]:
    """One pass over ``loader`` (until the step budget runs out); ``model`` is what runs (it may wrap
    ``state.model``). Returns mean loss, mean extra terms, images, wall and process-CPU seconds."""
    from tqdm import tqdm

    model.train()
    sums: dict[str, float] = {"loss": 0.0}
    seen, start, cpu_start = 0, time.perf_counter(), time.process_time()
    bar = tqdm(loader, desc=f"epoch {state.epoch + 1}", disable=not state.progress, leave=False, unit="batch")
    for batch in bar:
        out = loss_fn(batch)
        if out is None:
            continue
        loss, n, terms = out
        value = optimizer_step(state, loss)
        seen += n
        sums["loss"] += value * n
        for key, term in terms.items():
            sums[key] = sums.get(key, 0.0) + float(term) * n
        if state.progress:
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{state.optimizer.param_groups[0]['lr']:.4f}", refresh=False)
        if state.finished:
            break
    bar.close()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    keys = sorted(sums)
    totals = ddp.all_reduce_sum([sums[k] for k in keys] + [float(seen)], state.device)
    images = totals[-1]
    out_stats = {k: v / max(images, 1) for k, v in zip(keys, totals)}
    out_stats.update(images=images, seconds=seconds, cpu_seconds=cpu_seconds)
    state.epoch += 1
    return out_stats


def epoch_row(state: LoopState, stats: dict[str, float]) -> dict[str, Any]:
    """The history row of the epoch just run: epoch, step, lr, train loss (and terms), speed."""
    row: dict[str, Any] = dict(epoch=state.epoch, step=state.step, lr=state.optimizer.param_groups[0]["lr"],
                               train_loss=stats["loss"], epoch_s=stats["seconds"],
                               images_per_s=stats["images"] / max(stats["seconds"], 1e-9))
    row.update({f"loss_{k}": v for k, v in stats.items()
                if k not in ("loss", "images", "seconds", "cpu_seconds")})
    return row


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state-dict entries that train: parameters with ``requires_grad`` and the buffers of the
    modules holding them (e.g. the BatchNorm statistics of a trained head)."""
    out: dict[str, torch.Tensor] = {}
    for mname, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if not any(p.requires_grad for p in own.values()):
            continue
        prefix = mname + "." if mname else ""
        out.update({prefix + n: p.detach() for n, p in own.items() if p.requires_grad})
        out.update({prefix + n: b for n, b in module.named_buffers(recurse=False)
                    if n not in module._non_persistent_buffers_set})
    return out


def model_state(state: LoopState, module: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """What a checkpoint holds of ``module`` (default: the state's model): all of its state, or with
    ``trainable_only`` the entries of the model's :func:`trainable_state`."""
    full = (module or state.model).state_dict()
    if not state.trainable_only:
        return full
    return {k: full[k] for k in trainable_state(state.model)}


def checkpoint(state: LoopState, kind: str, **extra: Any) -> dict[str, Any]:
    """A checkpoint of the loop (format ``carve-<kind>-1``) plus ``extra`` (config, spec, classes...)."""
    ema = model_state(state, state.ema.module) if state.ema is not None else None
    if state.trainable_only:
        extra = dict(extra, trainable_only=True, base=state.base)
    return dict(format=f"carve-{kind}-1", model=model_state(state), ema=ema,
                optimizer=state.optimizer.state_dict(), scheduler=state.scheduler.state_dict(),
                scaler=state.scaler.state_dict(), rng=ddp.gather_objects(capture_rng()), epoch=state.epoch,
                step=state.step, total_steps=state.total_steps, best=state.best, history=state.history, **extra)


def save(state: LoopState, kind: str, paths: list[Path] | None = None, **extra: Any) -> None:
    """Write ``checkpoint(state, kind, **extra)`` atomically to each of ``paths`` (default: the state's).

    Under DDP every process calls it (the RNG states are gathered); the main process writes.
    """
    payload = checkpoint(state, kind, **extra)
    if ddp.is_main_process():
        for path in paths or [state.checkpoint_path]:
            save_checkpoint(path, payload)


def resume(state: LoopState, path: str | Path, kind: str, rank: int = 0) -> dict[str, Any]:
    """Restore weights, optimizer, schedule, scaler, EMA, RNG and counters from a ``kind`` checkpoint;
    returns the checkpoint for what the caller stored beside them.

    Resuming continues a run on the schedule it started with: a checkpoint of another model, or
    one whose schedule has a different number of steps (e.g. more epochs asked of a finished run),
    is refused with a ``ValueError`` naming the file and what differs.
    """
    saved = load_checkpoint(path)
    if saved.get("format") != f"carve-{kind}-1":
        raise ValueError(f"{path}: not a carve {kind} checkpoint (format {saved.get('format')!r})")
    if state.trainable_only or saved.get("trainable_only"):
        load_trainable(state.model, saved, path, state.base)
    else:
        _load_same_model(state.model, saved, path)
    _check_same_schedule(state, saved, path)
    if state.ema is not None and saved.get("ema"):
        state.ema.module.load_state_dict(saved["ema"], strict=not state.trainable_only)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.scaler.load_state_dict(saved["scaler"])
    rngs = saved["rng"]
    restore_rng(rngs[rank] if rank < len(rngs) else rngs[0])
    state.epoch, state.step, state.best = saved["epoch"], saved["step"], saved["best"]
    state.history = list(saved["history"])
    return saved


def base_differences(saved: dict[str, Any] | None, ours: dict[str, Any] | None) -> list[str]:
    """What differs between two base identities (name, spec_sha256, weights_sha256), in words."""
    saved, ours = saved or {}, ours or {}
    return [f"{key} {saved.get(key)} there, {ours.get(key)} here" for key in sorted(set(saved) | set(ours))
            if saved.get(key) != ours.get(key)]


def load_trainable(model: nn.Module, saved: dict[str, Any], path: str | Path, base: dict[str, Any] | None) -> None:
    """Load a trainable-only checkpoint's state into ``model`` after checking that it was trained on the
    same frozen base (``base``) and holds exactly the model's trainable entries; ``ValueError`` names
    the file and what differs."""
    if not saved.get("trainable_only"):
        raise ValueError(f"resume: {path} holds a whole model, this run trains only on a frozen base (peft)")
    if base is None:
        raise ValueError(f"resume: {path} holds only trainable parameters (peft); this run trains the whole model")
    differ = base_differences(saved.get("base"), base)
    if differ:
        raise ValueError(f"resume: {path} was trained on another base model: {'; '.join(differ)}")
    want, held = set(trainable_state(model)), set(saved["model"])
    if want != held:
        missing, unexpected = sorted(want - held)[:5], sorted(held - want)[:5]
        raise ValueError(f"resume: {path} holds other trainable tensors than this run's (missing {missing}, "
                         f"unexpected {unexpected}): another peft method, rank or head")
    model.load_state_dict(saved["model"], strict=False)


def _load_same_model(model: nn.Module, saved: dict[str, Any], path: str | Path) -> None:
    from carve.zoo import WeightsError, load_state_dict_strict

    try:
        load_state_dict_strict(model, saved["model"], str(path))
    except WeightsError as exc:
        held = (saved.get("spec") or {}).get("name")
        ours = getattr(getattr(model, "spec", None), "name", None)
        what = f" (the checkpoint holds {held}, this run builds {ours})" if held and ours and held != ours else ""
        raise ValueError(f"resume: {path} is a checkpoint of a different model than this run's{what}: "
                         f"{str(exc).split(': ', 1)[-1]}") from None


def _check_same_schedule(state: LoopState, saved: dict[str, Any], path: str | Path) -> None:
    total = saved.get("total_steps")
    if total is None:  # checkpoints before total_steps was stored: the scheduler's own record
        lambdas = (saved.get("scheduler") or {}).get("lr_lambdas") or [None]
        total = (lambdas[0] or {}).get("total_steps")
    if total is None or total == state.total_steps:
        return
    where = "finished" if saved["step"] >= total else f"stopped at step {saved['step']}"
    raise ValueError(f"resume: {path} belongs to a run scheduled for {total} steps ({where}); this run asks for "
                     f"{state.total_steps} (epochs, max_steps, batch size or data changed). Resuming continues a run "
                     f"on its own schedule, whose learning rate has decayed to its end: to train longer, start a new "
                     f"run in a new out_dir from its weights (e.g. pretrained=<its final.safetensors>)")
