"""One entry point to build a detector of any supported head over any zoo backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from carve.zoo import ArchSpec

from .backbone import DetectionBackbone, apply_freeze

HEADS = ("ssdlite", "fasterrcnn", "retinanet", "fcos")
DEFAULT_STRIDES = {"ssdlite": (16, 32), "fasterrcnn": (8, 16, 32), "retinanet": (8, 16, 32), "fcos": (8, 16, 32)}


def build_detector(head: str, backbone: str | Path | ArchSpec | dict, num_classes: int, img_size: int = 320,
                   pretrained: bool | str = False, freeze: str | int = "none", frozen_bn: bool = False,
                   expansion_tap: bool = True, fpn_channels: int = 256, **kwargs: Any) -> nn.Module:
    """A torchvision detector with a zoo backbone; ``num_classes`` counts objects, without background.

    The backbone's pretraining mean/std normalise the input. ``freeze``/``frozen_bn``: see
    :func:`apply_freeze`. ``expansion_tap``: SSDLite's C4 expansion-layer tap (see backbone.py).
    """
    if head not in HEADS:
        raise ValueError(f"head: expected one of {list(HEADS)}, got {head!r}")
    adapter = DetectionBackbone(backbone, DEFAULT_STRIDES[head], pretrained=pretrained,
                                expansion_tap=expansion_tap and head == "ssdlite")
    apply_freeze(adapter, freeze, frozen_bn)
    cfg = adapter.pretrained_cfg
    norm = dict(mean=cfg.get("mean", (0.485, 0.456, 0.406)), std=cfg.get("std", (0.229, 0.224, 0.225)))
    if head == "ssdlite":
        from .ssdlite import build_ssdlite

        return build_ssdlite(adapter, num_classes + 1, img_size, **norm, **kwargs)
    from . import fpn_detectors

    build = {"fasterrcnn": fpn_detectors.build_fasterrcnn, "retinanet": fpn_detectors.build_retinanet,
             "fcos": fpn_detectors.build_fcos}[head]
    return build(adapter, num_classes + 1, img_size, fpn_channels, **norm, **kwargs)
