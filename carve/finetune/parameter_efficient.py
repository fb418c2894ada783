"""Parameter-efficient transfer: LoRA (the ``peft`` library) or bottleneck adapters on a frozen zoo body.

``add_peft`` freezes the model (the body's BatchNorm statistics too), adds the method's parameters
to the zoo body and leaves only them and the task head trainable; ``merge_peft`` folds LoRA into
the weights and returns a plain model with the same spec (no extra latency when deployed);
``base_identity`` is what a trainable-only checkpoint records of the frozen base it needs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from .backbone import freeze_bn, thaw_bn
from .bottleneck import add_adapters
from .peft_options import PeftSettings

ATTRIBUTE = "carve_peft"  # where add_peft leaves its PeftInfo on the model


@dataclass
class PeftInfo:
    """What ``add_peft`` did: the settings, the body's attribute path (``""``: the model itself), the
    prefixes of the task head that trains whole, the adapted modules and the base's identity."""

    settings: PeftSettings
    body: str
    head: list[str]
    targets: list[str]
    base: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        c = self.counts
        return (f"{self.settings.to_text()}: {c['trainable']:,} of {c['total']:,} parameters train "
                f"({100 * c['trainable'] / max(c['total'], 1):.2f}%; {c['method']:,} {self.settings.method}, "
                f"{c['head']:,} head)")


def spec_sha256(spec: Any) -> str:
    """SHA-256 of an ArchSpec's JSON without the class count (the task head is not the base)."""
    data = spec.to_dict()
    data.get("head", {}).pop("num_classes", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def weights_sha256(module: nn.Module, skip: Sequence[str] = ()) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``module``'s state (BatchNorm step counters
    and names starting with ``skip`` left out)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name.endswith("num_batches_tracked") or name.startswith(tuple(skip)):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def base_identity(body: nn.Module, skip: Sequence[str] = ()) -> dict[str, str]:
    """The name, spec hash and weights hash of a zoo body before any method is added."""
    spec = getattr(body, "spec", None)
    if spec is None:
        raise ValueError(f"peft: {type(body).__name__} is not a zoo model (no spec); use a zoo or searched backbone")
    return dict(name=spec.name, spec_sha256=spec_sha256(spec), weights_sha256=weights_sha256(body, skip))


def lora_targets(body: nn.Module, targets: str, skip: Sequence[str] = ()) -> list[str]:
    """Names of the modules LoRA adapts: dense 1x1 convs (``pointwise``) or every dense conv and
    linear layer (``all``). Depthwise/grouped convs are left out: ``peft`` cannot merge them."""
    names = []
    for name, module in body.named_modules():
        if not name or (name + ".").startswith(tuple(skip)):
            continue
        if type(module) is nn.Conv2d and module.groups == 1:
            if targets == "all" or module.kernel_size == (1, 1):
                names.append(name)
        elif type(module) is nn.Linear and targets == "all":
            names.append(name)
    return names


def add_peft(model: nn.Module, settings: PeftSettings, body: str = "", head: Sequence[str] = ()) -> PeftInfo:
    """Freeze ``model``, add ``settings``' method to its zoo body at attribute path ``body`` and leave
    trainable only the method's parameters and those whose names start with a ``head`` prefix.

    The body's BatchNorm layers become FrozenBatchNorm2d, so its tensors stay bit-identical while
    training. The result starts out computing what the model did (LoRA's B and the adapters'
    up-projections start at zero). Returns the :class:`PeftInfo`, also left on the model.
    """
    if getattr(model, ATTRIBUTE, None) is not None:
        raise ValueError("peft: the model already has a parameter-efficient method added")
    module = model.get_submodule(body) if body else model
    prefix = body + "." if body else ""
    skip = [h[len(prefix):] for h in head if h.startswith(prefix)]  # head parts inside the body
    base = base_identity(module, skip)
    total = sum(p.numel() for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    freeze_bn(module)
    if settings.method == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        targets = lora_targets(module, settings.targets, skip)
        if not targets:
            raise ValueError(f"peft: {base['name']} has no {settings.targets} layers for LoRA")
        config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                            target_modules=targets, bias="none")
        inject_adapter_in_model(config, module)
        if hasattr(module, "peft_config"):
            del module.peft_config
    else:
        targets = add_adapters(module, settings.reduction, settings.dropout)
    method = 0
    for name, p in model.named_parameters():
        if name.startswith(tuple(head)):
            p.requires_grad_(True)
        elif ".lora_" in name or ".adapter." in name:
            p.requires_grad_(True)
            method += p.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts = dict(total=total + method, trainable=trainable, method=method, head=trainable - method)
    info = PeftInfo(settings, body, list(head), targets, base, counts)
    setattr(model, ATTRIBUTE, info)
    return info


def peft_info(model: nn.Module) -> PeftInfo | None:
    """The :class:`PeftInfo` ``add_peft`` left on ``model`` (None for a plain model)."""
    return getattr(model, ATTRIBUTE, None)


def merge_peft(model: nn.Module) -> nn.Module:
    """A copy of a LoRA model with the low-rank updates folded into the weights: the plain model
    (same modules, names and spec, plain BatchNorm) that exports and times like the base.

    Adapters add layers; they cannot be folded away (``ValueError``)."""
    info = peft_info(model)
    if info is None:
        raise ValueError("merge_peft: the model has no parameter-efficient method added")
    if info.settings.method != "lora":
        raise ValueError(f"merge_peft: {info.settings.method} layers are non-linear and cannot be merged into the "
                         f"weights; deploy the adapted model as it is")
    merged = copy.deepcopy(model)
    delattr(merged, ATTRIBUTE)
    body = merged.get_submodule(info.body) if info.body else merged
    for name in info.targets:
        layer = body.get_submodule(name)
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = body.get_submodule(parent_name) if parent_name else body
        setattr(parent, child, layer.get_base_layer())
    for p in merged.parameters():
        p.requires_grad_(True)
    thaw_bn(body, body.spec.norm.momentum)
    return merged

