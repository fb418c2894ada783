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
from carve.zoo import create_model, save_weights

from .backbone import freeze_bn, freeze_stages, thaw_bn
from .config import ClassifyConfig
from .parameter_efficient import PeftInfo, add_peft, merge_peft, peft_info

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
    peft: PeftInfo | None = None
    peft_weights: Path | None = None

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / max(self.trainable_params + self.frozen_params, 1)


def transfer_model(config: ClassifyConfig, num_classes: int) -> tuple[nn.Module, int]:
    """``config.model`` with a fresh ``num_classes`` classifier and the freezing policy applied;
    returns it and the number of frozen parameters."""
    model = create_model(config.model, pretrained=config.pretrained, num_classes=num_classes,
                         small_input=config.small_input)
    model.reset_classifier(num_classes)  # a fresh head even when the class count matches
    settings = config.peft_settings()
    if settings is not None:
        if config.freeze not in ("none", 0, "0"):
            raise config.error("freeze", "must be none with peft (the whole backbone is frozen already)")
        info = add_peft(model, settings, head=["classifier."])
        return model, info.counts["total"] - info.counts["trainable"]
    if config.freeze == "linear":
        return model, linear_probe(model)
    frozen = freeze_stages([nn.ModuleList([model.stem, model.stem_pool]), *model.blocks], config.freeze)
    if config.frozen_bn:
        for part in (model.stem, model.blocks, model.head_conv):
            freeze_bn(part)
    return model, frozen


def linear_probe(model: nn.Module) -> int:
    """Freeze every parameter and BatchNorm outside the classifier; returns the frozen parameters."""
    freeze_bn(model)
    frozen = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("classifier."))
        frozen += 0 if p.requires_grad else p.numel()
    return frozen


def classify(config: ClassifyConfig) -> ClassifyResult:
    """Finetune ``config.model`` with a new classifier on ``config.data``; return val top-1/top-5."""
    wall = time.perf_counter()
    seed_everything(config.seed, config.deterministic)  # the new head's initial weights follow the seed
    model, frozen = transfer_model(config, len(class_names(config.data)))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = peft_info(model)
    if info is None:  # with peft the method's parameters train at the full rate, like the head
        body = [n.split(".")[0] + "." for n, _ in model.named_parameters() if not n.startswith(HEAD_PREFIXES)]
        config = replace(config, lr_scale={**{p: config.backbone_lr_mult for p in dict.fromkeys(body)},
                                           **config.lr_scale})
    result = fit(config, model=model, frozen_base=info.base if info is not None else None)
    last = result.history[-1]
    out_dir = Path(config.out_dir)
    weights, deployed, peft_weights = out_dir / "final.safetensors", result.model, None
    if info is None:
        thaw_bn(result.model, result.model.spec.norm.momentum)  # plain BatchNorm again, for compress and export
    else:
        deployed, weights, peft_weights = _write_peft_weights(result.model, result.history, config)
    return ClassifyResult(top1=result.final_top1, top5=last.get("top5", float("nan")), history=result.history,
                          out_dir=out_dir, weights=weights, frozen_params=frozen, trainable_params=trainable,
                          wall_s=time.perf_counter() - wall, model=deployed, peft=info, peft_weights=peft_weights)


def _write_peft_weights(model: nn.Module, history: list[dict], config: ClassifyConfig) -> tuple[nn.Module, Path, Path]:
    """``peft.safetensors`` (trainable state + base identity) and, for LoRA, ``final.safetensors``: the
    merged plain model that export, latency and compress take. Returns (deployable model, its
    weights file, the peft file)."""
    from .peft_files import save_peft

    out_dir = Path(config.out_dir)
    info = model.carve_peft
    metrics = dict(top1=history[-1].get("top1"), top5=history[-1].get("top5"), data=str(config.data),
                   trainable_params=info.counts["trainable"], total_params=info.counts["total"])
    peft_path = save_peft(model, out_dir / "peft.safetensors", metrics)
    if info.settings.method != "lora":
        return model, peft_path, peft_path
    merged = merge_peft(model)
    return merged, save_weights(merged, out_dir / "final.safetensors", dict(metrics, merged=info.settings.to_text())), \
        peft_path
