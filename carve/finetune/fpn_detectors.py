"""FPN over a zoo backbone (torchvision ``BackboneWithFPN`` style) and the detectors built on it:
Faster R-CNN, plus RetinaNet and FCOS, which reuse the same adapter at no extra cost."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from .backbone import DetectionBackbone


class FPNBackbone(nn.Module):
    """Backbone maps (e.g. strides 8, 16, 32) through a feature pyramid, plus a max-pooled level."""

    def __init__(self, backbone: DetectionBackbone, out_channels: int = 256):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        self.body = backbone
        self.fpn = FeaturePyramidNetwork(list(backbone.out_channels), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels
        self.num_maps = len(backbone.out_channels) + 1
        self.strides = list(backbone.strides) + [2 * backbone.strides[-1]]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def _transform_options(img_size: int, mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    return dict(min_size=img_size, max_size=2 * img_size, image_mean=list(mean), image_std=list(std))


def build_fasterrcnn(backbone: DetectionBackbone, num_classes: int, img_size: int = 320, fpn_channels: int = 256,
                     mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                     **kwargs: Any) -> nn.Module:
    """Faster R-CNN + FPN; ``num_classes`` includes the background.

    Settings follow ``fasterrcnn_mobilenet_v3_large_320_fpn``: five anchor sizes and three ratios
    on every level, images resized to ``img_size`` on the short side, 150 RPN proposals at test.
    """
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FasterRCNN
    from torchvision.ops import MultiScaleRoIAlign

    fpn = FPNBackbone(backbone, fpn_channels)
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * fpn.num_maps, ((0.5, 1.0, 2.0),) * fpn.num_maps)
    pooler = MultiScaleRoIAlign([str(i) for i in range(fpn.num_maps - 1)], output_size=7, sampling_ratio=2)
    options = dict(rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150, rpn_score_thresh=0.05,
                   box_score_thresh=0.001, **_transform_options(img_size, mean, std))
    options.update(kwargs)
    return FasterRCNN(fpn, num_classes, rpn_anchor_generator=anchors, box_roi_pool=pooler, **options)


def _pyramid_sizes(strides: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    return tuple((4 * s, int(4 * s * 2 ** (1 / 3)), int(4 * s * 2 ** (2 / 3))) for s in strides)


def build_retinanet(backbone: DetectionBackbone, num_classes: int, img_size: int = 320, fpn_channels: int = 256,
                    mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                    **kwargs: Any) -> nn.Module:
    """RetinaNet on the same FPN adapter (anchors 4x the stride, three scales and three ratios per level)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.retinanet import RetinaNet

    fpn = FPNBackbone(backbone, fpn_channels)
    anchors = AnchorGenerator(_pyramid_sizes(fpn.strides), ((0.5, 1.0, 2.0),) * fpn.num_maps)
    options = dict(score_thresh=0.01, **_transform_options(img_size, mean, std))
    options.update(kwargs)
    return RetinaNet(fpn, num_classes, anchor_generator=anchors, **options)


def build_fcos(backbone: DetectionBackbone, num_classes: int, img_size: int = 320, fpn_channels: int = 256,
               mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
               **kwargs: Any) -> nn.Module:
    """FCOS (anchor-free, one point per location, sized by the stride) on the same FPN adapter."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOS

    fpn = FPNBackbone(backbone, fpn_channels)
    anchors = AnchorGenerator(tuple((s,) for s in fpn.strides), ((1.0,),) * fpn.num_maps)
    options = dict(score_thresh=0.01, **_transform_options(img_size, mean, std))
    options.update(kwargs)
    return FCOS(fpn, num_classes, anchor_generator=anchors, **options)
