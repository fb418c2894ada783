"""Clean-up for inference: fold BatchNorm into the preceding convolution, drop training-only modules."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from carve.zoo import ArchSpec
from carve.zoo.layers import DropPath
from carve.zoo.mobileone import reparameterize


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a conv (same class, with bias) computing ``bn(conv(x))`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = copy.deepcopy(conv)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _fold_children(module: nn.Module) -> int:
    """Fold every (conv, bn) pair held as attributes ``conv``/``bn`` or ``fc1``/``bn``; return the count."""
    count = 0
    for child in module.children():
        count += _fold_children(child)
    for conv_name in ("conv", "fc1"):
        conv, bn = getattr(module, conv_name, None), getattr(module, "bn", None)
        if isinstance(conv, nn.Sequential) and len(conv) and isinstance(conv[-1], nn.Conv2d):
            conv, target = conv[-1], conv  # a factorised conv: fold into its output layer
        else:
            target = None
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            if target is None:
                setattr(module, conv_name, fuse_conv_bn(conv, bn))
            else:
                target[-1] = fuse_conv_bn(conv, bn)
            module.bn = nn.Identity()
            count += 1
    return count


def _drop_training_only(module: nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, (nn.Dropout, DropPath)):
            setattr(module, name, nn.Identity())
            count += 1
        else:
            count += _drop_training_only(child)
    return count


def fold(model: nn.Module, spec: ArchSpec | None = None, inplace: bool = False) -> tuple[nn.Module, ArchSpec]:
    """Inference clean-up: BN folded into convs (bias added), dropout and drop-path removed.

    The returned model is in eval mode and computes what ``model.eval()`` computes (within float
    rounding). The spec is unchanged apart from dropout and drop-path set to 0; the folded module
    tree has no BN, so save the unfolded model if it must rebuild through ``create_model``.
    """
    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise ValueError("fold: spec is required for a model without a .spec attribute")
    out = model if inplace else copy.deepcopy(model)
    out.eval()
    folded = reparameterize(out)  # MobileOne folds through its deployed form: one conv with bias
    folded += _fold_children(out)
    dropped = _drop_training_only(out)
    new_spec = replace(spec, drop_path_rate=0.0, head=replace(spec.head, dropout=0.0))
    if hasattr(out, "spec"):
        out.spec = new_spec
    out.carve_steps = list(getattr(model, "carve_steps", [])) + [f"fold(bn={folded}, dropped={dropped})"]
    return out, new_spec


def fold_any(model: nn.Module) -> nn.Module:
    """An eval-mode copy of any model with BatchNorm folded into the layer before it: ``fold`` for carve
    models (those with a ``.spec``), torch.fx's conv/linear-BN fusion for other modules that trace
    symbolically; a module that does not trace is returned unfolded (MobileOne branches merged)."""
    spec = getattr(model, "spec", None)
    if spec is not None:
        return fold(model, spec)[0]
    from torch.fx.experimental.optimization import fuse

    base = reparameterize_copy(model)
    try:
        return fuse(base).eval()
    except Exception:  # not symbolically traceable (data-dependent control flow): keep it as is
        return base


def reparameterize_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with MobileOne's training branches merged."""
    out = copy.deepcopy(model).eval()
    reparameterize(out)
    return out
