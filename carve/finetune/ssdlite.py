"""SSDLite (torchvision's extra layers, head and default boxes) over a zoo backbone."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any, Sequence

import torch
from torch import nn

from .backbone import DetectionBackbone


def ssd_norm_layer() -> Any:
    """BatchNorm settings of torchvision's SSDLite."""
    return partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


class SSDLiteFeatures(nn.Module):
    """Backbone maps at stride 16 and 32, then torchvision's four extra blocks (strides 64-512)."""

    def __init__(self, backbone: DetectionBackbone, width_mult: float = 1.0, min_depth: int = 16):
        super().__init__()
        from torchvision.models.detection.ssdlite import _extra_block, _normal_init

        self.backbone = backbone
        depth = lambda d: max(min_depth, int(d * width_mult))  # noqa: E731
        widths = [backbone.out_channels[-1], depth(512), depth(256), depth(256), depth(128)]
        norm = ssd_norm_layer()
        self.extra = nn.ModuleList(_extra_block(a, b, norm) for a, b in zip(widths[:-1], widths[1:]))
        _normal_init(self.extra)
        self.out_channels = list(backbone.out_channels) + widths[1:]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = list(self.backbone(x).values())
        y = maps[-1]
        for block in self.extra:
            y = block(y)
            maps.append(y)
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


def build_ssdlite(backbone: DetectionBackbone, num_classes: int, img_size: int = 320,
                  mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                  **kwargs: Any) -> nn.Module:
    """SSDLite detector; ``num_classes`` includes the background, ``backbone`` taps strides 16 and 32.

    Defaults follow ``ssdlite320_mobilenet_v3_large`` (score 0.001, NMS 0.55, 300 detections,
    default boxes with ratios 2 and 3 between scales 0.2 and 0.95).
    """
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead

    if backbone.strides != [16, 32]:
        raise ValueError(f"SSDLite needs a backbone tapped at strides [16, 32], got {backbone.strides}")
    features = SSDLiteFeatures(backbone)
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    head = SSDLiteHead(features.out_channels, anchors.num_anchors_per_location(), num_classes, ssd_norm_layer())
    options = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300,
                   image_mean=list(mean), image_std=list(std))
    options.update(kwargs)
    return SSD(features, anchors, (img_size, img_size), num_classes, head=head, **options)
