"""The model registry: timm-style names mapped to spec builders, peers and published weights."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import replace
from functools import partial

from .families.carve import carve_spec
from .families.efficientnet import efficientnet_b0_spec
from .families.mobilenet import mobilenet_v1_spec, mobilenet_v2_spec, mobilenet_v3_spec
from .families.rexnet import rexnet_spec
from .families.shufflenet import shufflenet_v2_spec
from .family_tree import family_tree_entries
from .records import TIMM_BN, ModelEntry, Published, PublishedWeights
from .records import timm_weights as _timm
from .records import torchvision_weights as _tv
from .shipped import manifest

__all__ = ["TIMM_BN", "ModelEntry", "Published", "PublishedWeights", "entries", "get_entry", "list_models",
           "register"]

_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def _register_all() -> None:
    v1_pub = {0.25: (0.47, 41, "TF-slim mobilenet_v1.md table (0.47M; paper: 0.5M); MobileNets paper Table 14 (41M)"),
              0.5: (1.34, 149, "TF-slim mobilenet_v1.md table (1.34M; paper: 1.3M); MobileNets paper Table 14 (149M)"),
              0.75: (2.6, 325, "MobileNets paper, Table 14 (2.6M, 325M)"),
              1.0: (4.2, 569, "MobileNets paper, Table 14 (4.2M, 569M)")}
    for w in (0.25, 0.5, 0.75, 1.0):
        tag = f"{round(w * 100):03d}"
        weights = (_timm("mobilenetv1_100.ra4_e3600_r224_in1k", None),) if w == 1.0 else ()
        register(ModelEntry(f"mobilenet_v1_{tag}", "mobilenet_v1", partial(mobilenet_v1_spec, w),
                            timm="mobilenetv1_100" if w == 1.0 else None, weights=weights,
                            published=Published(*v1_pub[w])))
    v2_pub = {0.35: (1.66, 59, "TF-slim mobilenet/README.md table (1.66M, 59M)"),
              0.5: (1.95, 97, "TF-slim mobilenet/README.md table (1.95M, 97M)"),
              0.75: (2.61, 209, "TF-slim mobilenet/README.md table (2.61M, 209M)"),
              1.0: (3.505, 301, "torchvision MobileNet_V2_Weights meta (3,504,872 params, 0.301 GMACs)"),
              1.4: (6.06, 582, "TF-slim mobilenet/README.md table (6.06M, 582M; paper Table 4: 6.9M, 585M)")}
    v2_weights = {
        0.5: (_timm("mobilenetv2_050.lamb_in1k", 65.94),),
        1.0: (_tv("IMAGENET1K_V1", "mobilenet_v2", 71.878), _tv("IMAGENET1K_V2", "mobilenet_v2", 72.154),
              _timm("mobilenetv2_100.ra_in1k", 72.97)),
        1.4: (_timm("mobilenetv2_140.ra_in1k", 76.52),),
    }
    for w in (0.35, 0.5, 0.75, 1.0, 1.4):
        tag = f"{round(w * 100):03d}"
        register(ModelEntry(f"mobilenet_v2_{tag}", "mobilenet_v2", partial(mobilenet_v2_spec, w),
                            torchvision="mobilenet_v2" if w == 1.0 else None, timm=f"mobilenetv2_{tag}",
                            weights=v2_weights.get(w, ()), published=Published(*v2_pub[w])))
    v3_pub = {("large", 1.0): (5.483, 217, "torchvision MobileNet_V3_Large_Weights meta (5,483,032, 0.217 G); "
                                           "paper Table 3: 5.4M, 219M"),
              ("large", 0.75): (4.0, 155, "MobileNetV3 paper, Table 3 (4.0M, 155M)"),
              ("small", 1.0): (2.543, 57, "torchvision MobileNet_V3_Small_Weights meta (2,542,856, 0.057 G); "
                                          "paper Table 3: 2.5M, 56M"),
              ("small", 0.75): (2.04, 44, "timm mobilenetv3_small_075 parameter count (paper: 2.0M, rounded); "
                                          "MobileNetV3 paper Table 3 (44M)")}
    v3_weights = {
        ("large", 1.0): (_tv("IMAGENET1K_V1", "mobilenet_v3_large", 74.042),
                         _tv("IMAGENET1K_V2", "mobilenet_v3_large", 75.274),
                         _timm("mobilenetv3_large_100.ra_in1k", 75.77, TIMM_BN),
                         _timm("mobilenetv3_large_100.miil_in21k_ft_in1k", 77.92, TIMM_BN),
                         _timm("mobilenetv3_large_100.ra4_e3600_r224_in1k", None, TIMM_BN)),
        ("small", 1.0): (_tv("IMAGENET1K_V1", "mobilenet_v3_small", 67.668),
                         _timm("mobilenetv3_small_100.lamb_in1k", 67.66, TIMM_BN)),
        ("small", 0.75): (_timm("mobilenetv3_small_075.lamb_in1k", 65.24, TIMM_BN),),
    }
    for size in ("small", "large"):
        for w in (0.75, 1.0):
            tag = f"{round(w * 100):03d}"
            register(ModelEntry(f"mobilenet_v3_{size}_{tag}", f"mobilenet_v3_{size}", partial(mobilenet_v3_spec, size, w),
                                torchvision=f"mobilenet_v3_{size}" if w == 1.0 else None,
                                timm=f"mobilenetv3_{size}_{tag}", weights=v3_weights.get((size, w), ()),
                                published=Published(*v3_pub[(size, w)]), peer_norm={"timm": TIMM_BN}))
    sn_pub = {0.5: (1.367, 40, "torchvision ShuffleNet_V2_X0_5_Weights meta (1,366,792, 0.04 G); paper 41M"),
              1.0: (2.279, 145, "torchvision ShuffleNet_V2_X1_0_Weights meta (2,278,604, 0.145 G); paper 146M"),
              1.5: (3.504, 296, "torchvision ShuffleNet_V2_X1_5_Weights meta (3,503,624, 0.296 G); paper 299M"),
              2.0: (7.394, 583, "torchvision ShuffleNet_V2_X2_0_Weights meta (7,393,996, 0.583 G); paper 591M")}
    sn_top1 = {0.5: 60.552, 1.0: 69.362, 1.5: 72.996, 2.0: 76.23}
    for w in (0.5, 1.0, 1.5, 2.0):
        tag = f"{round(w * 100):03d}"
        tv = f"shufflenet_v2_x{str(w).replace('.', '_')}"
        register(ModelEntry(f"shufflenet_v2_{tag}", "shufflenet_v2", partial(shufflenet_v2_spec, w), torchvision=tv,
                            weights=(_tv("IMAGENET1K_V1", tv, sn_top1[w]),), published=Published(*sn_pub[w])))
    register(ModelEntry("efficientnet_b0", "efficientnet", efficientnet_b0_spec, torchvision="efficientnet_b0",
                        timm="efficientnet_b0",
                        weights=(_tv("IMAGENET1K_V1", "efficientnet_b0", 77.692),
                                 _timm("efficientnet_b0.ra_in1k", 77.69),
                                 _timm("efficientnet_b0.ra4_e3600_r224_in1k", None)),
                        published=Published(5.289, 386, "torchvision EfficientNet_B0_Weights meta "
                                             "(5,288,548, 0.386 G); paper Table 2: 5.3M, 0.39B")))
    rx_pub = {1.0: (4.8, 400, "ReXNet paper / clovaai/rexnet README (4.8M, 0.40B)"),
              1.3: (7.6, 660, "ReXNet paper / clovaai/rexnet README (7.6M, 0.66B)"),
              1.5: (9.7, 860, "ReXNet paper / clovaai/rexnet README (9.7M, 0.86B)"),
              2.0: (16.37, 1500, "timm rexnet_200 parameter count (printed 16M/16.4M); "
                                 "ReXNet paper / clovaai/rexnet README (1.5B)")}
    rx_top1 = {1.0: 77.86, 1.3: 79.49, 1.5: 80.31, 2.0: 81.63}
    for w in (1.0, 1.3, 1.5, 2.0):
        tag = f"{round(w * 100):03d}"
        register(ModelEntry(f"rexnet_{tag}", "rexnet", partial(rexnet_spec, w), timm=f"rexnet_{tag}",
                            weights=(_timm(f"rexnet_{tag}.nav_in1k", rx_top1[w]),), published=Published(*rx_pub[w])))
    for w in (0.75, 1.0, 1.25):
        tag = f"{round(w * 100):03d}"
        register(ModelEntry(f"carve_{tag}", "carve", partial(carve_spec, w)))
    for entry in family_tree_entries():
        register(entry)


def _with_shipped(entry: ModelEntry) -> ModelEntry:
    """``entry`` with the weights that ship in ``carve/weights`` (read now: the manifest may change)."""
    shipped = tuple(PublishedWeights(tag, "carve", models[entry.name]["file"], models[entry.name].get("top1"),
                                     dataset=models[entry.name].get("dataset", tag))
                    for tag, models in manifest().items() if entry.name in models)
    return replace(entry, weights=entry.weights + shipped) if shipped else entry


_register_all()


def get_entry(name: str) -> ModelEntry:
    """Registry entry by name; an unknown name raises with the closest matches."""
    try:
        return _with_shipped(_REGISTRY[name])
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see list_models() ({len(_REGISTRY)} models)"
        raise KeyError(f"unknown model {name!r}{hint}") from None


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered model names matching a glob pattern (only those with published weights if asked)."""
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
    if pretrained:
        names = [n for n in names if get_entry(n).weights]
    return names


def entries() -> list[ModelEntry]:
    return [get_entry(n) for n in sorted(_REGISTRY)]
