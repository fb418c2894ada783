"""Registry entries for the rest of the lightweight family tree: SqueezeNet, ShuffleNetV1, MnasNet,
FBNet, MobileNetV4, EfficientNetV2 and MobileOne, each with its twins, published figures (source
beside each number) and published weights."""

from __future__ import annotations

from functools import partial

from .families.efficientnet import efficientnet_v2_b0_spec
from .families.fbnet import fbnet_c_spec
from .families.mnasnet import mnasnet_small_spec, mnasnet_spec
from .families.mobilenet_v4 import mobilenet_v4_spec
from .families.mobileone import mobileone_spec
from .families.shufflenet import shufflenet_v1_spec
from .families.squeezenet import squeezenet_spec
from .records import ModelEntry, Published
from .records import timm_weights as _timm
from .records import torchvision_weights as _tv


def _squeezenet() -> list[ModelEntry]:
    pub = {"1_0": (1.248, 819, "torchvision SqueezeNet1_0_Weights meta (1,248,424 params, 0.819 G); "
                               "SqueezeNet paper Table 1 (1,248,424 params)"),
           "1_1": (1.235, 349, "torchvision SqueezeNet1_1_Weights meta (1,235,496 params, 0.349 G); "
                               "authors' SqueezeNet v1.1 release notes (2.4x less computation than 1.0)")}
    top1 = {"1_0": 58.092, "1_1": 58.178}
    return [ModelEntry(f"squeezenet_{v}", "squeezenet", partial(squeezenet_spec, v), torchvision=f"squeezenet{v}",
                       weights=(_tv("IMAGENET1K_V1", f"squeezenet{v}", top1[v]),), published=Published(*pub[v]))
            for v in ("1_0", "1_1")]


def _shufflenet_v1() -> list[ModelEntry]:
    # megvii-model/ShuffleNet-Series README, ShuffleNetV1 table (group=3): the authors' released models
    src = "megvii-model/ShuffleNet-Series README, ShuffleNetV1 (group=3) table"
    pub = {0.5: Published(0.7, 38, f"{src} (0.7M, 38M); paper Table 2 (38 MFLOPs)", rounding=(0.1, 0.0)),
           1.0: Published(1.9, 138, f"{src} (1.9M, 138M); paper Table 2: 140 MFLOPs"),
           1.5: Published(3.4, 292, f"{src} (3.4M, 292M)"),
           2.0: Published(5.4, 524, f"{src} (5.4M, 524M); paper Table 8: 524 MFLOPs")}
    return [ModelEntry(f"shufflenet_v1_{round(w * 100):03d}", "shufflenet_v1", partial(shufflenet_v1_spec, w),
                       published=pub[w]) for w in (0.5, 1.0, 1.5, 2.0)]


def _mnasnet() -> list[ModelEntry]:
    tv = {0.5: "mnasnet0_5", 0.75: "mnasnet0_75", 1.0: "mnasnet1_0", 1.3: "mnasnet1_3"}
    pub = {0.5: (2.219, 104, "torchvision MNASNet0_5_Weights meta (2,218,512 params, 0.104 G)"),
           0.75: (3.17, 215, "torchvision MNASNet0_75_Weights meta (3,170,208 params, 0.215 G)"),
           1.0: (4.383, 314, "torchvision MNASNet1_0_Weights meta (4,383,312 params, 0.314 G)"),
           1.3: (6.282, 526, "torchvision MNASNet1_3_Weights meta (6,282,256 params, 0.526 G)")}
    top1 = {0.5: 67.734, 0.75: 71.18, 1.0: 73.456, 1.3: 76.506}
    out = []
    for w in (0.5, 0.75, 1.0, 1.3):
        tag = f"{round(w * 100):03d}"
        weights = (_tv("IMAGENET1K_V1", tv[w], top1[w]),)
        if w == 1.0:
            weights += (_timm("mnasnet_100.rmsp_in1k", None),)
        out.append(ModelEntry(f"mnasnet_{tag}", "mnasnet", partial(mnasnet_spec, w), torchvision=tv[w],
                              timm=f"mnasnet_{tag}" if w != 1.3 else None, weights=weights,
                              published=Published(*pub[w])))
    out.append(ModelEntry("mnasnet_small", "mnasnet", mnasnet_small_spec, timm="mnasnet_small",
                          weights=(_timm("mnasnet_small.lamb_in1k", None),),
                          published=Published(2.0, 68, "tensorflow/tpu models/official/mnasnet README "
                                                       "(mnasnet-small: 2.0M params, 68M multiply-adds)")))
    return out


def _fbnet() -> list[ModelEntry]:
    why = ("timm's fbnetc_100 (the twin) keeps the 1x1 expand conv in the expansion-1 blocks and a 1984-wide "
           "head, both read from the paper's figure ('not 100% clear', timm notes): 385M MACs")
    return [ModelEntry("fbnet_c", "fbnet", fbnet_c_spec, timm="fbnetc_100",
                       weights=(_timm("fbnetc_100.rmsp_in1k", None),),
                       published=Published(5.5, 375, "FBNet paper Table 2 (FBNet-C: 5.5M params, 375M FLOPs)",
                                           deviation=why))]


def _mobilenet_v4() -> list[ModelEntry]:
    card = "timm model card"
    pub = {"small": Published(3.8, 200, f"{card} mobilenetv4_conv_small.e2400_r224_in1k (3.8M, 0.2 GMACs at 224); "
                                        "MobileNetV4 paper Table 11 (3.8M, 0.2G)", rounding=(0.0, 100.0)),
           "medium": Published(9.7, 1100, f"{card} mobilenetv4_conv_medium.e500_r256_in1k (9.7M, 1.1 GMACs at 256)",
                               input_size=256),
           "large": Published(32.6, 6400, f"{card} mobilenetv4_conv_large.e600_r384_in1k (32.6M, 6.4 GMACs at 384)",
                              input_size=384)}
    tags = {"small": ("e2400_r224_in1k", "e1200_r224_in1k", "e3600_r256_in1k"),
            "medium": ("e500_r224_in1k", "e500_r256_in1k", "e250_r384_in12k_ft_in1k"),
            "large": ("e500_r256_in1k", "e600_r384_in1k")}
    return [ModelEntry(f"mobilenet_v4_conv_{s}", "mobilenet_v4", partial(mobilenet_v4_spec, s),
                       timm=f"mobilenetv4_conv_{s}",
                       weights=tuple(_timm(f"mobilenetv4_conv_{s}.{t}", None) for t in tags[s]), published=pub[s])
            for s in ("small", "medium", "large")]


def _efficientnet_v2() -> list[ModelEntry]:
    return [ModelEntry("efficientnet_v2_b0", "efficientnet_v2", efficientnet_v2_b0_spec, timm="tf_efficientnetv2_b0",
                       weights=(_timm("tf_efficientnetv2_b0.in1k", 78.7),),
                       published=Published(7.1, 720, "google/automl efficientnetv2 README "
                                                     "(EffNetV2-B0: 7.1M params, 0.72B FLOPs, 78.7% top-1)"))]


def _mobileone() -> list[ModelEntry]:
    # MobileOne paper Table 9 (params, MFLOPs counted with fvcore, i.e. multiply-adds; top-1), deployed models;
    # open-mmlab/mmpretrain configs/mobileone/README (params to 0.01M, GFLOPs) agrees
    paper = {"s0": (2.1, 275, 71.4, "2.08M, 0.27G"), "s1": (4.8, 825, 75.9, "4.76M, 0.82G"),
             "s2": (7.8, 1299, 77.4, "7.81M, 1.30G"), "s3": (10.1, 1896, 78.1, "10.08M, 1.89G"),
             "s4": (14.8, 2978, 79.4, "14.84M, 2.98G")}
    out = []
    for v, (params, macs, top1, mm) in paper.items():
        src = f"MobileOne paper Table 9 ({params}M, {macs}M FLOPs by fvcore, deployed); mmpretrain README ({mm})"
        out.append(ModelEntry(f"mobileone_{v}", "mobileone", partial(mobileone_spec, v), timm=f"mobileone_{v}",
                              weights=(_timm(f"mobileone_{v}.apple_in1k", top1),),
                              published=Published(params, macs, src)))
    return out


def family_tree_entries() -> list[ModelEntry]:
    """The entries, in registration order."""
    return (_squeezenet() + _shufflenet_v1() + _mnasnet() + _fbnet() + _mobilenet_v4() + _efficientnet_v2()
            + _mobileone())
