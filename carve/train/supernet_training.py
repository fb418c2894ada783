"""Training a weight-sharing supernet with the sandwich rule and in-place distillation (BigNAS, AttentiveNAS).

Every step trains, on one batch, the largest sub-network on the labels, then the smallest and
``random_subnets`` random ones on the largest's soft outputs (its logits, detached): one summed loss,
one optimizer step. The random sub-networks and their resolutions are a function of (seed, step),
so a resumed run samples what the uninterrupted one would. The loop pieces are ``carve.train``'s:
data loaders, SGD with cosine warm-up, ``engine``'s step, checkpoints and exact resume. Held-out
top-1 of the largest and smallest sub-networks is measured on extracted models after BatchNorm
re-estimation, as the search later scores them.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from carve.config import Config, setting
from carve.files import claim_run_dir, write_json
from carve.zoo import ArchSpec, create_model
from carve.zoo.elastic import ElasticSpace, elastic_space, space_from_dict
from carve.zoo.supernet import Supernet, extract, implant, save_supernet

from .batchnorm import calibration_loader, recalibrate_bn
from .config import AMP_MODES, AUG_PRESETS
from .data import classes_of, eval_loader, set_epoch, train_loader
from .distill import kd_loss
from .engine import LoopState, amp_dtype, epoch_row, plan_schedule, resume, run_epoch, save, seed_everything
from .evaluation import evaluate
from .optim import build_optimizer, build_scheduler, scaled_lr

log = logging.getLogger("carve.train")
CHECKPOINT_KIND = "supernet"
RUN_FILES = ("last.pt", "final.safetensors")


@dataclass
class SupernetTrainConfig(Config):
    """A supernet training run (defaults: the Tiny ImageNet recipe at its native 64 px)."""

    space: str = setting("carve", help="built-in supernet space (carve) or a .json/.yaml file of one")
    data: str = setting("../shared/data/tiny-imagenet", help="image-folder root or WebDataset shards")
    out_dir: str = setting("runs/supernet", help="output folder")
    epochs: int = setting(30, ">= 1", help="passes over the training images")
    batch_size: int = setting(128, ">= 1", help="images per step")
    lr: float = setting(0.4, "positive", help="learning rate for base_batch_size images per step")
    base_batch_size: int = setting(256, help="batch size lr is given for (0: no scaling)")
    momentum: float = setting(0.9, "in [0, 1)", help="SGD momentum")
    weight_decay: float = setting(5e-5, ">= 0", help="weight decay")
    warmup_epochs: float = setting(2.0, ">= 0", help="linear warmup length in epochs")
    label_smoothing: float = setting(0.1, "in [0, 1)", help="label smoothing of the largest sub-network's loss")
    aug: str = setting("weak", choices=AUG_PRESETS, help="augmentation preset")
    img_size: int = setting(64, ">= 8", help="image size the data is read at (and evaluated at)")
    resolutions: tuple[int, ...] = setting((), ">= 8", help="sub-network training resolutions (default: img_size); the "
                                                            "largest trains at the highest, the smallest at the lowest")
    random_subnets: int = setting(2, ">= 0", help="random sub-networks per step besides the largest and smallest")
    kd_temperature: float = setting(1.0, "positive", help="temperature of the in-place distillation")
    init_from: str | None = setting(None, help="NAME@TAG (e.g. carve_125@carve:tiny-imagenet) or a carve weights "
                                               "file: a sub-network whose weights start the supernet")
    amp: str = setting("none", choices=AMP_MODES, help="mixed precision")
    grad_clip: float = setting(0.0, ">= 0", help="gradient norm clip (0 disables clipping)")
    train_per_class: int = setting(0, ">= 0", help="first N training images per class (0 = all)")
    val_per_class: int = setting(0, ">= 0", help="first N held-out images per class (0 = all)")
    val_fraction: float = setting(0.1, "in (0, 1)", help="shards only: share of the samples held out, by key")
    bn_recalibration: int = setting(20, ">= 1", help="batches re-estimating BatchNorm statistics before evaluation")
    eval_every: int = setting(1, ">= 1", help="evaluate every N epochs")
    max_steps: int = setting(0, ">= 0", help="cap on optimizer steps (0 = no cap)")
    seed: int = setting(0, help="random seed")
    workers: int = setting(2, ">= 0", help="data loader workers")
    resume: bool | str = setting(False, help="true (the out_dir's last checkpoint) or a checkpoint path")
    overwrite: bool = setting(False, help="replace a run already in out_dir")
    device: str = setting("auto", help="auto, cpu or cuda[:N]")
    progress: bool = setting(True, help="progress bars")

    def train_resolutions(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.resolutions))) or (self.img_size,)


@dataclass
class SupernetFitResult:
    supernet: Supernet
    history: list[dict] = field(default_factory=list)
    out_dir: Path | None = None
    final_path: Path | None = None
    top1: dict[str, float] = field(default_factory=dict)  # held-out top-1 of the largest and smallest sub-networks


def load_space(text: str | ElasticSpace) -> ElasticSpace:
    """A built-in supernet space by name, or one from a .json/.yaml file (``ElasticSpace.to_dict`` data)."""
    if isinstance(text, ElasticSpace) or Path(str(text)).suffix not in (".json", ".yaml", ".yml"):
        return elastic_space(text)
    path = Path(str(text))
    if not path.is_file():
        raise FileNotFoundError(f"space: file not found: {path}")
    import yaml

    data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    return space_from_dict(data, f"{path}")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def sandwich(step: int, seed: int, space: ElasticSpace, resolutions: tuple[int, ...],
             random_subnets: int) -> list[tuple[str, ArchSpec, int]]:
    """The sub-networks one step trains: (role, spec, resolution); the largest first (a function of seed and step)."""
    rng = random.Random(f"{seed}/{step}")
    arms = [("largest", space.largest(), max(resolutions)), ("smallest", space.smallest(), min(resolutions))]
    for _ in range(random_subnets):
        arms.append(("random", space.sample(rng), rng.choice(resolutions)))
    return arms


def sandwich_loss(supernet: Supernet, state: LoopState, cfg: SupernetTrainConfig,
                  label_loss: nn.Module) -> Callable[[Any], Any]:
    """The loss of one batch: the largest on the labels plus every other arm's KD loss to it."""
    resolutions = cfg.train_resolutions()

    def loss_of(batch: Any) -> tuple[torch.Tensor, int, dict] | None:
        images, targets = batch[0], batch[1]
        if images.numel() == 0:
            return None
        images, targets = images.to(state.device, non_blocking=True), targets.to(state.device, non_blocking=True)
        total, terms, soft = None, {}, None
        counts: dict[str, int] = {}
        for role, spec, size in sandwich(state.step, cfg.seed, supernet.space, resolutions, cfg.random_subnets):
            supernet.set_active(spec)
            with state.autocast():
                logits = supernet(_resize(images, size))
                if soft is None:
                    loss = label_loss(logits, targets)
                    soft = logits.detach()
                else:
                    loss = kd_loss(logits, soft, cfg.kd_temperature)
            total = loss if total is None else total + loss
            terms[role] = terms.get(role, 0.0) + loss.detach().float()
            counts[role] = counts.get(role, 0) + 1
        supernet.set_active(None)
        return total, images.shape[0], {k: v / counts[k] for k, v in terms.items()}

    return loss_of


def evaluate_subnetworks(supernet: Supernet, specs: dict[str, ArchSpec], calibration: Any, held_out: Any,
                         device: torch.device) -> dict[str, float]:
    """Held-out top-1 of each named sub-network, extracted and its BatchNorm statistics re-estimated."""
    out = {}
    for name, spec in specs.items():
        model = extract(supernet, spec)
        recalibrate_bn(model, calibration, device)
        out[name] = float(evaluate(model, held_out, device=device)["top1"])
    return out


def initialise_from(supernet: Supernet, source: str, num_classes: int) -> None:
    """Write a pretrained sub-network (``NAME@TAG`` or a carve weights file) into the supernet."""
    name, _, tag = source.partition("@")
    donor = create_model(name, pretrained=tag, num_classes=num_classes) if tag else create_model(source,
                                                                                               num_classes=num_classes)
    implant(supernet, donor)


def train_supernet(cfg: SupernetTrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None = None,
                   supernet: Supernet | None = None) -> SupernetFitResult:
    """Train a supernet of ``cfg.space`` (or the one given) on ``cfg.data``; checkpoints and the final
    weights (``final.safetensors``, see ``carve.zoo.save_supernet``) go to ``out_dir``."""
    out_dir = claim_run_dir(cfg.out_dir, cfg.resume, cfg.overwrite, RUN_FILES)
    device = _device(cfg.device)
    seed_everything(cfg.seed)
    train_dl = train_loader(cfg.data, cfg.img_size, cfg.batch_size, cfg.aug, cfg.train_per_class, cfg.workers,
                            cfg.seed, val_fraction=cfg.val_fraction)
    classes = classes_of(train_dl)
    held_out = eval_loader(cfg.data, cfg.img_size, cfg.batch_size, cfg.val_per_class, cfg.workers,
                           val_fraction=cfg.val_fraction, classes=classes)
    calibration = calibration_loader(cfg.data, cfg.img_size, cfg.batch_size, cfg.bn_recalibration,
                                     cfg.train_per_class, cfg.seed, cfg.val_fraction)
    if supernet is None:
        supernet = Supernet(load_space(cfg.space), num_classes=len(classes))
        if cfg.init_from and not cfg.resume:
            initialise_from(supernet, cfg.init_from, len(classes))
    elif supernet.spec.head.num_classes != len(classes):
        raise ValueError(f"supernet: predicts {supernet.spec.head.num_classes} classes, the data has {len(classes)}")
    supernet.to(device)

    lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.base_batch_size)
    steps_per_epoch = len(train_dl)
    total_steps, epochs = plan_schedule(cfg.epochs, steps_per_epoch, cfg.max_steps)
    optimizer = build_optimizer(supernet, lr, cfg.momentum, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps, round(cfg.warmup_epochs * steps_per_epoch))
    state = LoopState(supernet, optimizer, scheduler, device, total_steps, amp=amp_dtype(cfg.amp, device),
                      grad_clip=cfg.grad_clip, progress=cfg.progress, checkpoint_path=out_dir / "last.pt")
    if cfg.resume:
        path = out_dir / "last.pt" if cfg.resume is True else Path(cfg.resume)
        resume(state, path, CHECKPOINT_KIND)
        log.info("resumed from %s at epoch %d, step %d", path, state.epoch, state.step)
    loss_fn = sandwich_loss(supernet, state, cfg, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))
    log.info("supernet %s: %d classes, %d train images, %d steps, lr %.4g, %d sub-networks per step",
             supernet.space.name, len(classes), len(train_dl.dataset), total_steps, lr, 2 + cfg.random_subnets)

    top1: dict[str, float] = {}
    for epoch in range(state.epoch, epochs):
        set_epoch(train_dl, epoch, cfg.seed)
        stats = run_epoch(state, supernet, train_dl, loss_fn)
        row = epoch_row(state, stats)
        if epoch + 1 == epochs or (epoch + 1) % cfg.eval_every == 0:
            top1 = evaluate_subnetworks(supernet, dict(largest=supernet.largest(), smallest=supernet.smallest()),
                                        calibration, held_out, device)
            row.update({f"top1_{k}": v for k, v in top1.items()})
            state.best = max(state.best, top1["largest"])
        state.history.append(row)
        save(state, CHECKPOINT_KIND, config=cfg.to_dict(), space=supernet.space.to_dict(), classes=classes)
        write_json(out_dir / "history.json", state.history)
        if on_epoch is not None:
            on_epoch(dict(row))

    if not top1:  # resumed a finished run
        top1 = evaluate_subnetworks(supernet, dict(largest=supernet.largest(), smallest=supernet.smallest()),
                                    calibration, held_out, device)
    final = save_supernet(supernet, out_dir / "final.safetensors",
                          dict(top1_largest=top1["largest"], top1_smallest=top1["smallest"], epochs=epochs,
                               data=str(cfg.data), classes=classes))
    return SupernetFitResult(supernet=supernet, history=state.history, out_dir=out_dir, final_path=final, top1=top1)
