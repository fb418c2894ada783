"""The carve family: CPU-friendly inverted residuals, wide early, lean late.

Design brief and the reason for each choice:

- Inverted residuals (1x1 expand, depthwise kxk, linear 1x1 project) as in MobileNetV2/V3: they
  are the cheapest way to buy receptive field per MAC and every runtime has fast kernels for them.
- ResNet-style skips on every stride-1 block, including those that widen (the shortcut is added to
  the first input-width channels, as ReXNet does). Skips keep gradients healthy when the backbone
  is later finetuned under a detection head with a small learning rate.
- Channels weighted toward early layers: stride 4 and stride 8 carry 32 and 56 channels (MobileNetV3
  Large: 24 and 40). Thin early layers are what hurts lightweight backbones on detection, where the
  stride-8 and stride-16 maps feed the box heads directly; the extra cost is paid in MACs at high
  resolution, which CPUs handle well because the tensors are few and regular.
- Channels taken from late layers: stride 32 stops at 144 channels with a 1x1 to 768 (MobileNetV3
  Large: 160 and 960), and the late stages have fewer blocks. At 7x7 the per-operator overhead,
  not MACs, dominates CPU latency, so fewer late blocks are the cheapest cut.
- No pooling or upsampling inside the body: those ops are memory-bound on CPUs and break operator
  fusion in ONNX Runtime; the only pooling layer is the global pool of the head. (SE's squeeze is
  a global mean over a 14x14 or 7x7 map, part of the SE the brief asks for, not a pooling layer.)
- SE only at stride 16 and 32, where the feature maps are small and the squeeze is cheap; SE at
  high resolution costs a full-tensor rescale per block for little accuracy.
- 3x3 depthwise kernels except in the last stage (5x5): larger kernels at high resolution cost
  latency on CPUs without proportional gains; at 7x7 a 5x5 kernel is nearly free.
- ReLU in the stages at strides 2 to 8, hard-swish from stride 16 on (MobileNetV3's finding:
  non-linearity matters more in deep layers, and hard-swish at high resolution costs memory
  traffic). The 16-channel stem keeps hard-swish as in MobileNetV3, where it let the stem be
  halved to 16 filters at no accuracy cost; at 16 channels its cost is small.
- The head pools first and then applies a 1280-wide linear layer (MobileNetV3's efficient head),
  so the classifier's cost does not scale with the input resolution.

Sizes scale every body width by a multiplier (``make_divisible``, 8); the head stays 1280.

Measured (batch 1, 224 px, CPU, 2 threads, interleaved in one process; see docs/zoo.md):
carve_100 / mobilenet_v3_large_100 latency is 0.63-0.69 in eager PyTorch and 0.54-0.61 in ONNX
Runtime, with 32/56 channels at stride 4/8 against 24/40, 3.3 M params and 154 M MACs against 5.5 M and
217 M.
"""

from __future__ import annotations

from ..spec import ArchSpec, BlockSpec, HeadSpec, NormSpec, StemSpec, make_divisible
from ._common import expand, se, stage, width_tag

# Per stage: (kernel, expansion, out, use_se, act, stride) per block.
_CARVE = [
    [(3, 1, 16, False, "relu", 1)],
    [(3, 4, 32, False, "relu", 2), (3, 3, 32, False, "relu", 1)],
    [(3, 3, 56, False, "relu", 2), (3, 3, 56, False, "relu", 1)],
    [(3, 4, 88, False, "hardswish", 2), (3, 2.5, 88, False, "hardswish", 1),
     (3, 4, 112, True, "hardswish", 1)],
    [(5, 5, 144, True, "hardswish", 2), (5, 4, 144, True, "hardswish", 1)],
]
_LAST_CONV = 768


def carve_spec(width: float = 1.0) -> ArchSpec:
    rc = lambda c: make_divisible(c * width)  # noqa: E731
    stem_ch = rc(16)
    cin, stages = stem_ch, []
    for rows in _CARVE:
        blocks = []
        for k, e, c, use_se, act, s in rows:
            out = rc(c)
            mid = expand(cin, e)
            sespec = se(make_divisible(mid * 0.25), "relu", "hardsigmoid") if use_se else None
            blocks.append(BlockSpec("ir", out, k, s, act=act, mid_channels=mid, se=sespec, skip="partial"))
            cin = out
        stages.append(stage(*blocks))
    stages[-1] = stage(*stages[-1].blocks, BlockSpec("conv", rc(_LAST_CONV), 1, 1, act="hardswish"))
    return ArchSpec(name=f"carve_{width_tag(width)}", family="carve", stem=StemSpec(stem_ch, act="hardswish"),
                    stages=tuple(stages), head=HeadSpec(fc_channels=1280, fc_act="hardswish", dropout=0.2),
                    norm=NormSpec(eps=1e-5, momentum=0.1))
