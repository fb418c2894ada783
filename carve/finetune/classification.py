"""Classification transfer: ``fit`` training a new classifier on a zoo backbone's (pretrained) body.

What transfer adds to the training recipe is the new head, the freezing policy and a lower
learning rate for the body; the loop, checkpoints and exact resume are ``carve.train``'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from carve.train import fit, seed_everything
from carve.train.data import class_names
from carve.zoo import create_model

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


def transfer_model(config: ClassifyConfig, num_classes: int) -> tuple[nn.Module, int]:
    """``config.model`` with a fresh ``num_classes`` classifier and the freezing policy applied;
    returns it and the number of frozen parameters."""
    model = create_model(config.model, pretrained=config.pretrained, num_classes=num_classes,
                         small_input=config.small_input)
    model.reset_classifier(num_classes)  # a fresh head even when the class count matches
    frozen = freeze_stages([nn.ModuleList([model.stem, model.stem_pool]), *model.blocks], config.freeze)
    if config.frozen_bn:
        for part in (model.stem, model.blocks, model.head_conv):
            freeze_bn(part)
    return model, frozen


def classify(config: ClassifyConfig) -> ClassifyResult:
    """Finetune ``config.model`` with a new classifier on ``config.data``; return val top-1/top-5."""
    wall = time.perf_counter()
    seed_everything(config.seed, config.deterministic)  # the new head's initial weights follow the seed
    model, frozen = transfer_model(config, len(class_names(config.data)))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    body = [n.split(".")[0] + "." for n, _ in model.named_parameters() if not n.startswith(HEAD_PREFIXES)]
    config = replace(config, lr_scale={**{p: config.backbone_lr_mult for p in dict.fromkeys(body)}, **config.lr_scale})
    result = fit(config, model=model)
    thaw_bn(result.model, result.model.spec.norm.momentum)  # plain BatchNorm again, for compress and export
    last = result.history[-1]
    return ClassifyResult(top1=result.final_top1, top5=last.get("top5", float("nan")), history=result.history,
                          out_dir=Path(config.out_dir), weights=Path(config.out_dir) / "final.safetensors",
                          frozen_params=frozen, trainable_params=trainable,
                          wall_s=time.perf_counter() - wall, model=result.model)
