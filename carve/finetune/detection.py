"""``detect(DetectConfig) -> DetectResult``: finetune a detector with a zoo backbone, evaluate, report.

The loop (optimizer step, epoch, checkpoint, exact resume) is ``carve.train.engine``'s, shared
with classification; what is detection's own is the data, the detector, the loss and COCO mAP.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from carve.files import claim_run_dir, writable_dir, write_json
from carve.train import (LoopState, amp_dtype, build_optimizer, build_scheduler, load_checkpoint, plan_schedule,
                         seed_everything)
from carve.train.batchnorm import recalibrate_bn
from carve.train.data import SkipCounter
from carve.train.ddp import resolve_device
from carve.train.engine import LossFn, epoch_row, load_trainable, memory_format, resume, run_epoch, save
from carve.zoo import check_input_size

from .config import DetectConfig
from .dataset import DetectionDataset, collate
from .evaluate import evaluate_detector, format_metrics
from .heads import build_detector
from .parameter_efficient import PeftInfo, add_peft, merge_peft
from .peft_options import PeftSettings, parse_peft
from .sources import open_dataset
from .transforms import eval_transforms, train_transforms

log = logging.getLogger("carve.finetune")

CHECKPOINT_KIND = "detect"


@dataclass
class DetectResult:
    """What a run produced: final validation metrics (AP, AP50, ... per_class) and its files."""

    metrics: dict[str, Any]
    out_dir: Path
    checkpoint: Path
    best_checkpoint: Path | None
    examples_png: Path | None
    results_json: Path
    metrics_json: Path
    history: list[dict] = field(default_factory=list)
    num_train: int = 0
    num_val: int = 0
    data_stats: dict[str, int] = field(default_factory=dict)
    skipped_images: int = 0
    wall_s: float = 0.0
    images_per_s: float = 0.0
    model: nn.Module | None = field(default=None, repr=False)
    trainable_params: int = 0
    total_params: int = 0
    peft: PeftInfo | None = None
    peft_weights: Path | None = None


def load_splits(config: DetectConfig) -> tuple[DetectionDataset, DetectionDataset]:
    """Train and validation datasets as the config describes."""
    full = open_dataset(config.data, config.data_format, config.split)
    if config.train_ids is not None or config.val_ids is not None:
        if config.train_ids is None or config.val_ids is None:
            raise ValueError("DetectConfig: give both train_ids and val_ids, or neither")
        return full.subset(list(config.train_ids)), full.subset(list(config.val_ids))
    if config.val_data is not None or config.val_split is not None:
        source = config.val_data if config.val_data is not None else config.data
        val = open_dataset(source, config.data_format, config.val_split)
        if val.categories != full.categories:
            raise ValueError(f"{source}: categories {val.class_names} differ from {config.data}'s {full.class_names}")
        return full, val
    return full.split(config.val_fraction, config.split_seed)


def find_backbone(model: nn.Module) -> tuple[str, Any]:
    """(name, module) of the zoo backbone adapter inside a detector."""
    from .backbone import DetectionBackbone

    for name, module in model.named_modules():
        if isinstance(module, DetectionBackbone):
            return name, module
    raise ValueError("no DetectionBackbone inside the model")


def detector_from_meta(meta: dict[str, Any], pretrained: Any = False) -> nn.Module:
    """Rebuild the detector a checkpoint describes (weights not loaded)."""
    cfg = meta["config"]
    return build_detector(cfg["head"], meta["spec"], len(meta["cat_ids"]), cfg["img_size"], pretrained=pretrained,
                          freeze=cfg["freeze"], frozen_bn=cfg["frozen_bn"], expansion_tap=cfg["expansion_tap"],
                          fpn_channels=cfg["fpn_channels"])


def add_detector_peft(model: nn.Module, settings: PeftSettings) -> PeftInfo:
    """``add_peft`` on a detector: the method goes into the zoo body, everything outside it (FPN,
    extra layers, heads) trains whole."""
    body = find_backbone(model)[0] + ".body"
    head = [n for n, _ in model.named_parameters() if not n.startswith(body + ".")]
    return add_peft(model, settings, body, head)


def load_detector(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A trained detector and its metadata (config, spec, categories) from a detect checkpoint.

    A peft run's checkpoint holds only what trained: the frozen base is rebuilt from the run's
    ``pretrained`` weights and must be the one it trained on (``ValueError`` says what differs)."""
    state = load_checkpoint(path)
    if state.get("format") != f"carve-{CHECKPOINT_KIND}-1":
        raise ValueError(f"{path}: not a carve detection checkpoint (format {state.get('format')!r})")
    if not state.get("trainable_only"):
        model = detector_from_meta(state)
        model.load_state_dict(state["model"])
        return model.eval(), state
    cfg = state["config"]
    model = detector_from_meta(state, pretrained=cfg["pretrained"])
    info = add_detector_peft(model, parse_peft(cfg["peft"], f"{path}: config.peft"))
    load_trainable(model, state, path, info.base)
    return model.eval(), state


def _train_loader(dataset: DetectionDataset, config: DetectConfig, epoch: int) -> Any:
    from torch.utils.data import DataLoader

    gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=gen,
                      drop_last=_drop_last(len(dataset), config.batch_size),
                      num_workers=config.workers, collate_fn=collate)


def calibration_batches(dataset: DetectionDataset, config: DetectConfig) -> Any:
    """The first ``config.bn_recalibration`` batches of ``dataset``'s images, not augmented, in a fixed
    order (lists of image tensors, as the detector takes them); draws nothing from the global RNG.
    A batch of one image is left out: BatchNorm in training mode fails on SSD's 1x1 extra maps."""
    from torch.utils.data import DataLoader, Subset

    plain = dataset.with_transforms(eval_transforms())
    n = min(len(plain), config.bn_recalibration * config.batch_size)
    loader = DataLoader(Subset(plain, range(n)), batch_size=config.batch_size, shuffle=False,
                        num_workers=config.workers, collate_fn=collate, generator=torch.Generator().manual_seed(0))
    for images, _, _ in loader:
        if len(images) > 1:
            yield ([im.as_subclass(torch.Tensor) for im in images],)


def _drop_last(n: int, batch_size: int) -> bool:
    # a one-image batch breaks BatchNorm on SSD's 1x1 extra maps; drop it when it is the remainder
    return n > batch_size and n % batch_size == 1


def _to_device(images: list, targets: list, device: torch.device) -> tuple[list, list]:
    images = [im.as_subclass(torch.Tensor).to(device) for im in images]
    targets = [dict(boxes=t["boxes"].as_subclass(torch.Tensor).to(device), labels=t["labels"].to(device))
               for t in targets]
    return images, targets


def detection_loss(model: nn.Module, state: LoopState) -> LossFn:
    """The summed loss of one ``(images, targets, skipped files)`` batch, with each of the detector's
    loss terms (None for a batch whose images could not be decoded)."""

    def loss_of(batch: Any) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]] | None:
        images, targets, skipped = batch
        # a batch left with one image by skipping is dropped too: BatchNorm cannot train on one 1x1 map
        if not images or (skipped and len(images) == 1):
            return None
        images, targets = _to_device(images, targets, state.device)
        with state.autocast():
            losses = model(images, targets)
        return sum(losses.values()), len(images), {k: v.detach() for k, v in losses.items()}

    return loss_of


def counting_skips(loss_fn: LossFn, skips: SkipCounter) -> LossFn:
    """``loss_fn`` adding each batch's undecodable files to ``skips`` (which logs them by name)."""

    def loss_of(batch: Any) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]] | None:
        skips.add(batch[2])
        return loss_fn(batch)

    return loss_of


def train_epoch(state: LoopState, model: nn.Module, loader: Any, loss_fn: LossFn) -> dict[str, float]:
    """One detection epoch (``engine.run_epoch``); the point tests and callers hook into."""
    return run_epoch(state, model, loader, loss_fn)


def detect(config: DetectConfig) -> DetectResult:
    """Finetune ``config.backbone`` with ``config.head`` on ``config.data``; evaluate with COCO mAP.

    Writes to ``out_dir``: ``last.pt`` (every epoch, for resume), ``best.pt`` (best val AP),
    ``metrics.csv``/``tb/``/``curve.png`` (carve.train's CurveLogger), ``history.json``,
    ``detections.json`` (COCO results on the validation set), ``metrics.json`` and ``examples.png``.
    """
    from .curves import DetectCurves

    wall = time.perf_counter()
    out_dir = claim_run_dir(config.out_dir, config.resume, config.overwrite)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    device = resolve_device(config.device)
    seed_everything(config.seed)

    # Data
    plain_train, val_set = load_splits(config)
    if len(plain_train) == 0:
        raise ValueError(f"{config.data}: no training images")
    fill = [round(255 * m) for m in (0.485, 0.456, 0.406)]
    train_set = plain_train.with_transforms(train_transforms(config.head, config.img_size, fill, config.augment))

    # Model
    model = build_detector(config.head, config.backbone, train_set.num_classes, config.img_size,
                           pretrained=config.pretrained, freeze=config.freeze, frozen_bn=config.frozen_bn,
                           expansion_tap=config.expansion_tap, fpn_channels=config.fpn_channels)
    model.to(device, memory_format=memory_format(config.channels_last))
    prefix, adapter = find_backbone(model)
    spec = check_input_size(adapter.spec, config.img_size, "img_size")
    settings, info = config.peft_settings(), None
    if settings is not None:
        if config.freeze not in ("none", 0, "0"):
            raise config.error("freeze", "must be none with peft (the whole backbone is frozen already)")
        info = add_detector_peft(model, settings)
        log.info("peft %s", info.summary())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = info.counts["total"] if info is not None else sum(p.numel() for p in model.parameters())

    # Recipe
    n, bs = len(train_set), config.batch_size
    steps_per_epoch = n // bs if _drop_last(n, bs) else math.ceil(n / bs)
    total_steps, epochs = plan_schedule(config.epochs, steps_per_epoch, config.max_steps)
    lr_scale = {prefix + ".": config.backbone_lr_mult} if config.backbone_lr_mult != 1 and info is None else None
    optimizer = build_optimizer(model, config.lr, config.momentum, config.weight_decay, nesterov=True,
                                lr_scale=lr_scale)
    scheduler = build_scheduler(optimizer, total_steps, round(config.warmup_epochs * steps_per_epoch))
    state = LoopState(model, optimizer, scheduler, device, total_steps, amp=amp_dtype(config.amp, device),
                      grad_clip=config.grad_clip, progress=config.progress, checkpoint_path=last_path,
                      trainable_only=info is not None, base=info.base if info is not None else None)
    skips = SkipCounter()  # undecodable images, skipped in training and evaluation
    loss_fn = counting_skips(detection_loss(model, state), skips)
    extra = dict(config=config.to_dict(), spec=spec.to_dict(), cat_ids=train_set.cat_ids,
                 class_names=train_set.class_names)

    # Resume
    if config.resume:
        path = last_path if config.resume is True else Path(config.resume)
        resume(state, path, CHECKPOINT_KIND)
        log.info("resumed from %s at epoch %d, step %d", path, state.epoch, state.step)

    curves = DetectCurves(out_dir, config.tensorboard, resume_epoch=state.epoch if config.resume else None)
    log.info("%s + %s: %d classes, %d train / %d val images, %d steps", spec.name, config.head,
             train_set.num_classes, len(train_set), len(val_set), total_steps)
    metrics: dict[str, Any] = {}
    predictions: dict[int, dict] = {}
    images_seen = seconds = 0.0
    for epoch in range(state.epoch, epochs):
        stats = train_epoch(state, model, _train_loader(train_set, config, epoch), loss_fn)
        images_seen += stats["images"]
        seconds += stats["seconds"]
        row = epoch_row(state, stats)
        improved = False
        if epoch + 1 == epochs or (epoch + 1) % config.eval_every == 0:
            if config.bn_recalibration and len(plain_train) > 1:  # running statistics lag the weights
                recalibrate_bn(model, calibration_batches(plain_train, config), device)
            metrics, predictions = evaluate_detector(model, val_set, config.batch_size, out_dir, config.workers,
                                                     config.progress, skips)
            row.update(AP=metrics["AP"], AP50=metrics["AP50"], AP75=metrics["AP75"])
            improved = metrics["AP"] > state.best
            state.best = max(state.best, metrics["AP"])
            log.info("epoch %d/%d: loss %.3f  %s", epoch + 1, epochs, stats["loss"], format_metrics(metrics))
        state.history.append(row)
        save(state, CHECKPOINT_KIND, [last_path, best_path] if improved else [last_path], **extra)
        curves.log(row, state.history)
        curves.plot(f"{spec.name} + {config.head}")
        write_json(out_dir / "history.json", state.history)
    curves.close()

    if not metrics:  # resumed a finished run: evaluate the final weights again
        metrics, predictions = evaluate_detector(model, val_set, config.batch_size, out_dir, config.workers,
                                                 config.progress, skips)
    examples = None
    if config.examples and predictions:
        from .visualise import draw_examples

        examples = draw_examples(val_set, predictions, out_dir / "examples.png", config.examples,
                                 config.example_score)
    deployed, peft_weights = model, None
    if info is not None:
        from .peft_files import save_peft

        peft_weights = save_peft(model, out_dir / "peft.safetensors", dict(AP=metrics.get("AP")))
        deployed = merge_peft(model) if settings.method == "lora" else model
    return DetectResult(metrics=metrics, out_dir=out_dir, checkpoint=last_path,
                        best_checkpoint=best_path if best_path.exists() else None, examples_png=examples,
                        results_json=out_dir / "detections.json", metrics_json=out_dir / "metrics.json",
                        history=state.history, num_train=len(train_set), num_val=len(val_set),
                        data_stats=train_set.stats.as_dict(),
                        skipped_images=skips.count + _unreadable(train_set, val_set),
                        wall_s=time.perf_counter() - wall, images_per_s=images_seen / max(seconds, 1e-9), model=deployed,
                        trainable_params=trainable, total_params=total, peft=info, peft_weights=peft_weights)


def _unreadable(*datasets: DetectionDataset) -> int:
    """Images their readers left out as unreadable (datasets split from one share its stats)."""
    return sum(stats.unreadable_images for stats in {id(d.stats): d.stats for d in datasets}.values())


def checkpoint_dataset(meta: dict[str, Any], path: str | Path, data: str | Path | None = None,
                       data_format: str = "auto", subset: str = "val") -> DetectionDataset:
    """The images a detect checkpoint (``meta``, read from ``path``) is evaluated on: ``data``
    (default: the run's data), its ``val`` split as the run derived it or ``all`` of it; its
    categories must be the checkpoint's."""
    if subset not in ("val", "all"):
        raise ValueError(f"subset: expected val or all, got {subset!r}")
    cfg = DetectConfig.from_dict(meta["config"])
    if data is not None:
        cfg.data, cfg.data_format, cfg.val_data = str(data), data_format, None
    dataset = open_dataset(cfg.data, cfg.data_format, cfg.split) if subset == "all" else load_splits(cfg)[1]
    if dataset.cat_ids != list(meta["cat_ids"]):
        raise ValueError(f"{cfg.data}: categories {dataset.cat_ids[:5]}... differ from the checkpoint's "
                         f"{list(meta['cat_ids'])[:5]}... ({path})")
    return dataset


def evaluate_checkpoint(path: str | Path, data: str | Path | None = None, data_format: str = "auto",
                        subset: str = "val", out_dir: str | Path | None = None, batch_size: int = 8,
                        examples: int = 6, example_score: float = 0.3, progress: bool = True) -> dict[str, Any]:
    """COCO mAP of a detect checkpoint. ``data`` defaults to the run's data; ``subset``: ``val``
    (the run's validation split, re-derived from its config) or ``all`` (every image). Writes
    ``detections.json``, ``metrics.json`` and ``examples.png`` to ``out_dir`` (default: next to the
    checkpoint, in ``eval/``). Returns the metrics with the file paths under ``files``."""
    if subset not in ("val", "all"):
        raise ValueError(f"subset: expected val or all, got {subset!r}")
    out = writable_dir(Path(out_dir) if out_dir is not None else Path(path).parent / "eval", "out")
    model, meta = load_detector(path)
    dataset = checkpoint_dataset(meta, path, data, data_format, subset)
    metrics, predictions = evaluate_detector(model, dataset, batch_size, out, progress=progress)
    files = dict(results_json=str(out / "detections.json"), metrics_json=str(out / "metrics.json"))
    if examples:
        from .visualise import draw_examples

        files["examples_png"] = str(draw_examples(dataset, predictions, out / "examples.png", examples, example_score))
    return dict(metrics, files=files, images=len(dataset) - metrics["skipped_images"])
