"""Params, MACs and activations of a model at a given input size."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .spec import ArchSpec
from .validation import check_input_size


@dataclass(frozen=True)
class Profile:
    """``macs`` counts convolution and matmul multiply-adds (as papers and torchvision publish);
    ``activations`` counts the output elements of every convolution and linear layer."""

    params: int
    macs: int
    activations: int
    input_size: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def profile(model: nn.Module, input_size: int = 224, in_channels: int = 3) -> Profile:
    """Profile ``model`` on one image of ``input_size`` px, in eval mode.

    Counting needs shapes only, so it runs on a copy on the meta device (no arithmetic); models
    that cannot be copied there are run as they are (training mode restored afterwards). A zoo
    model whose strides would shrink ``input_size`` below 1x1 is refused (``SpecError``).
    """
    spec = getattr(model, "spec", None)
    if isinstance(spec, ArchSpec):
        check_input_size(spec, input_size)
    try:
        meta_model = copy.deepcopy(model).to("meta")
    except Exception:  # e.g. modules holding non-copyable state
        meta_model = None
    if meta_model is not None:
        try:
            macs, acts = _count(meta_model, torch.zeros(1, in_channels, input_size, input_size, device="meta"))
        except Exception:  # an op without a meta kernel: count on the real model instead
            meta_model = None
    if meta_model is None:
        was_training = model.training
        try:
            macs, acts = _count(model, torch.zeros(1, in_channels, input_size, input_size))
        finally:
            model.train(was_training)
    return Profile(params=count_params(model), macs=macs, activations=acts, input_size=input_size)


def _count(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(MACs, conv/linear output elements) of one eval-mode forward pass."""
    model.eval()
    acts = [0]

    def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        acts[0] += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return counter.get_total_flops() // 2, acts[0]
