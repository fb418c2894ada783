"""Every family member is within 2% of its published parameter count and MACs (at 224 px unless
the source gives another resolution).

Figures are as printed by the source (millions). Where a paper rounds so coarsely that 2% is below
its rounding (MobileNets 0.5M, MobileNetV2 (1.4) 6.9M), the reference implementation's table is
used instead and the choice is noted; where no finer figure exists (MobileNetV4-Conv-S's 0.2 G,
ShuffleNetV1 0.5x's 0.7M), the count must round to the printed figure. torchvision's figures are
read live from its weights enums. Re-parameterisable models (MobileOne) are counted deployed, as
their papers count them.
"""

from typing import NamedTuple

import pytest
import timm
import torchvision

from carve.zoo import create_model, profile
from carve.zoo.mobileone import deployed
from carve.zoo.registry import entries, get_entry

TOLERANCE = 0.02


class Row(NamedTuple):
    name: str
    quantity: str
    value: float
    source: str
    input_size: int = 224
    rounding: float = 0.0  # the unit the source prints to, where coarser than 2%

# (model, quantity, published value in millions, source)
PUBLISHED = [
    # MobileNets (Howard et al. 2017), Table 14; TF-slim's table (research/slim/nets/mobilenet_v1.md)
    # where the paper's 0.1M rounding is coarser than 2%.
    ("mobilenet_v1_100", "macs", 569, "MobileNets paper, Table 14"),
    ("mobilenet_v1_100", "params", 4.2, "MobileNets paper, Table 14"),
    ("mobilenet_v1_075", "macs", 325, "MobileNets paper, Table 14"),
    ("mobilenet_v1_075", "params", 2.6, "MobileNets paper, Table 14"),
    ("mobilenet_v1_050", "macs", 149, "MobileNets paper, Table 14"),
    ("mobilenet_v1_050", "params", 1.34, "TF-slim mobilenet_v1.md (paper: 1.3)"),
    ("mobilenet_v1_025", "macs", 41, "MobileNets paper, Table 14"),
    ("mobilenet_v1_025", "params", 0.47, "TF-slim mobilenet_v1.md (paper: 0.5)"),
    # MobileNetV2 (Sandler et al. 2018): TF-slim's table (research/slim/nets/mobilenet/README.md)
    # covers every width; the paper's Table 4 gives 300M/3.4M for 1.0 and 585M/6.9M for 1.4.
    ("mobilenet_v2_140", "macs", 582, "TF-slim mobilenet/README.md"),
    ("mobilenet_v2_140", "params", 6.06, "TF-slim mobilenet/README.md"),
    ("mobilenet_v2_100", "macs", 300, "MobileNetV2 paper, Table 4; TF-slim mobilenet/README.md"),
    ("mobilenet_v2_100", "params", 3.47, "TF-slim mobilenet/README.md"),
    ("mobilenet_v2_075", "macs", 209, "TF-slim mobilenet/README.md"),
    ("mobilenet_v2_075", "params", 2.61, "TF-slim mobilenet/README.md"),
    ("mobilenet_v2_050", "macs", 97, "TF-slim mobilenet/README.md"),
    ("mobilenet_v2_050", "params", 1.95, "TF-slim mobilenet/README.md"),
    ("mobilenet_v2_035", "macs", 59, "TF-slim mobilenet/README.md"),
    ("mobilenet_v2_035", "params", 1.66, "TF-slim mobilenet/README.md"),
    # Searching for MobileNetV3 (Howard et al. 2019), Table 3.
    ("mobilenet_v3_large_100", "macs", 219, "MobileNetV3 paper, Table 3"),
    ("mobilenet_v3_large_100", "params", 5.4, "MobileNetV3 paper, Table 3"),
    ("mobilenet_v3_large_075", "macs", 155, "MobileNetV3 paper, Table 3"),
    ("mobilenet_v3_large_075", "params", 4.0, "MobileNetV3 paper, Table 3"),
    ("mobilenet_v3_small_100", "macs", 56, "MobileNetV3 paper, Table 3"),
    ("mobilenet_v3_small_100", "params", 2.5, "MobileNetV3 paper, Table 3"),
    ("mobilenet_v3_small_075", "macs", 44, "MobileNetV3 paper, Table 3"),
    # (params: the paper's 2.0M is rounded to 0.1M; timm's reference count is checked below)
    # ShuffleNet V2 (Ma et al. 2018), MFLOPs (= MACs) of its comparison table (Table 8).
    ("shufflenet_v2_050", "macs", 41, "ShuffleNet V2 paper, Table 8"),
    ("shufflenet_v2_100", "macs", 146, "ShuffleNet V2 paper, Table 8"),
    ("shufflenet_v2_150", "macs", 299, "ShuffleNet V2 paper, Table 8"),
    ("shufflenet_v2_200", "macs", 591, "ShuffleNet V2 paper, Table 8"),
    # EfficientNet (Tan & Le 2019), Table 2 ("FLOPS" there are multiply-adds).
    ("efficientnet_b0", "macs", 390, "EfficientNet paper, Table 2 (0.39B)"),
    ("efficientnet_b0", "params", 5.3, "EfficientNet paper, Table 2"),
    # ReXNet (Han et al. 2021), model table of the paper / clovaai/rexnet README.
    ("rexnet_100", "macs", 400, "ReXNet paper / clovaai README (0.40B)"),
    ("rexnet_100", "params", 4.8, "ReXNet paper / clovaai README"),
    ("rexnet_130", "macs", 660, "ReXNet paper / clovaai README (0.66B)"),
    ("rexnet_130", "params", 7.6, "ReXNet paper / clovaai README"),
    ("rexnet_150", "macs", 860, "ReXNet paper / clovaai README (0.86B)"),
    ("rexnet_150", "params", 9.7, "ReXNet paper / clovaai README"),
    ("rexnet_200", "macs", 1500, "ReXNet paper / clovaai README (1.5B)"),
    # (params: printed as 16M/16.4M in different places; timm's reference count is checked below)
    # ShuffleNetV1 (g=3): the authors' released models, megvii-model/ShuffleNet-Series README
    ("shufflenet_v1_050", "params", 0.7, "ShuffleNet-Series README (0.7M, printed to 0.1M)", 224, 0.1),
    ("shufflenet_v1_050", "macs", 38, "ShuffleNet-Series README; ShuffleNet paper Table 2"),
    ("shufflenet_v1_100", "params", 1.9, "ShuffleNet-Series README"),
    ("shufflenet_v1_100", "macs", 138, "ShuffleNet-Series README (paper Table 2: 140)"),
    ("shufflenet_v1_150", "params", 3.4, "ShuffleNet-Series README"),
    ("shufflenet_v1_150", "macs", 292, "ShuffleNet-Series README"),
    ("shufflenet_v1_200", "params", 5.4, "ShuffleNet-Series README"),
    ("shufflenet_v1_200", "macs", 524, "ShuffleNet-Series README; ShuffleNet paper Table 8"),
    # MnasNet small: tensorflow/tpu models/official/mnasnet README
    ("mnasnet_small", "params", 2.0, "tensorflow/tpu mnasnet README"),
    ("mnasnet_small", "macs", 68, "tensorflow/tpu mnasnet README"),
    # FBNet-C (Wu et al. 2019), Table 2; the MACs of timm's twin depart from it (see the registry)
    ("fbnet_c", "params", 5.5, "FBNet paper, Table 2"),
    # MobileNetV4 conv: timm's model cards (the paper prints the same rounded figures)
    ("mobilenet_v4_conv_small", "params", 3.8, "timm card mobilenetv4_conv_small.e2400_r224_in1k"),
    ("mobilenet_v4_conv_small", "macs", 200, "timm card (0.2 GMACs); MobileNetV4 paper Table 11", 224, 100),
    ("mobilenet_v4_conv_medium", "params", 9.7, "timm card mobilenetv4_conv_medium.e500_r256_in1k"),
    ("mobilenet_v4_conv_medium", "macs", 1100, "timm card (1.1 GMACs at 256 px)", 256),
    ("mobilenet_v4_conv_large", "params", 32.6, "timm card mobilenetv4_conv_large.e600_r384_in1k"),
    ("mobilenet_v4_conv_large", "macs", 6400, "timm card (6.4 GMACs at 384 px)", 384),
    # EfficientNetV2-B0: google/automl efficientnetv2 README
    ("efficientnet_v2_b0", "params", 7.1, "google/automl efficientnetv2 README"),
    ("efficientnet_v2_b0", "macs", 720, "google/automl efficientnetv2 README (0.72B FLOPs)"),
    # MobileOne (Vasu et al. 2023), Table 9, deployed (FLOPs by fvcore: multiply-adds)
    ("mobileone_s0", "params", 2.1, "MobileOne paper, Table 9"), ("mobileone_s0", "macs", 275, "MobileOne paper, Table 9"),
    ("mobileone_s1", "params", 4.8, "MobileOne paper, Table 9"), ("mobileone_s1", "macs", 825, "MobileOne paper, Table 9"),
    ("mobileone_s2", "params", 7.8, "MobileOne paper, Table 9"), ("mobileone_s2", "macs", 1299, "MobileOne paper, Table 9"),
    ("mobileone_s3", "params", 10.1, "MobileOne paper, Table 9"), ("mobileone_s3", "macs", 1896, "MobileOne paper, Table 9"),
    ("mobileone_s4", "params", 14.8, "MobileOne paper, Table 9"), ("mobileone_s4", "macs", 2978, "MobileOne paper, Table 9"),
]
PUBLISHED = [Row(*row) for row in PUBLISHED]

_PROFILES: dict[tuple[str, int], tuple[float, float]] = {}


def measured(name: str, input_size: int = 224) -> dict[str, float]:
    """Our params and MACs of the deployed model, in millions (cached: profiling is the slow part)."""
    if (name, input_size) not in _PROFILES:
        p = profile(deployed(create_model(name)), input_size)
        _PROFILES[(name, input_size)] = (p.params / 1e6, p.macs / 1e6)
    params, macs = _PROFILES[(name, input_size)]
    return {"params": params, "macs": macs}


def within(ours: float, published: float, rounding: float = 0.0) -> bool:
    """Within 2%, or, for a figure printed to a coarser unit, rounding to it."""
    return abs(ours - published) <= max(TOLERANCE * published, rounding / 2)


@pytest.mark.parametrize("row", PUBLISHED, ids=[f"{r.name}-{r.quantity}" for r in PUBLISHED])
def test_within_two_percent_of_published(row):
    ours = measured(row.name, row.input_size)[row.quantity]
    assert within(ours, row.value, row.rounding), \
        f"{row.name} {row.quantity}: ours {ours:.3f}M vs {row.value}M at {row.input_size} px ({row.source})"


def test_rounded_figures_are_coarser_than_two_percent():
    """The rounding allowance is only used where the source really prints too coarsely for 2%."""
    for row in PUBLISHED:
        if row.rounding:
            assert row.rounding / 2 > TOLERANCE * row.value, row
            assert not within(measured(row.name, row.input_size)[row.quantity], row.value), row


TV = [e for e in entries() if e.torchvision]


@pytest.mark.parametrize("entry", TV, ids=[e.name for e in TV])
def test_torchvision_meta_figures(entry):
    """torchvision publishes exact parameter counts and GMACs ('_ops') in its weights' meta."""
    meta = torchvision.models.get_model_weights(entry.torchvision).DEFAULT.meta
    ours = measured(entry.name)
    assert round(ours["params"] * 1e6) == meta["num_params"]
    assert within(ours["macs"], meta["_ops"] * 1e3)
    # The registry's top-1 for these weights is the one torchvision publishes.
    for w in entry.weights:
        if w.source == "torchvision":
            enum = torchvision.models.get_model_weights(entry.torchvision)
            assert w.top1 == enum[w.tag.split(":", 1)[1]].meta["_metrics"]["ImageNet-1K"]["acc@1"]


@pytest.mark.parametrize("name, timm_name", [("mobilenet_v3_small_075", "mobilenetv3_small_075"),
                                             ("rexnet_200", "rexnet_200")])
def test_params_of_reference_implementation(name, timm_name):
    """Where the paper's rounding is too coarse, timm's reference implementation is the source."""
    reference = sum(p.numel() for p in timm.create_model(timm_name).parameters()) / 1e6
    assert within(measured(name)["params"], reference)


def test_every_family_member_has_published_figures():
    covered = {(r.name, r.quantity) for r in PUBLISHED}
    covered |= {(e.name, q) for e in TV for q in ("params", "macs")}
    covered |= {("mobilenet_v3_small_075", "params"), ("rexnet_200", "params")}
    covered |= {("fbnet_c", "macs")}  # a documented deviation, checked below
    for e in entries():
        if e.family == "carve":
            assert e.published is None  # our own family has no published figures
            continue
        assert {(e.name, "params"), (e.name, "macs")} <= covered, e.name


@pytest.mark.parametrize("name", [e.name for e in entries() if e.published is not None])
def test_registry_published_figures_agree(name):
    """The registry's Published figures (shown by `carve zoo info`) stay within 2% as well, unless
    the registry says why not; then they really are off (the note stays true)."""
    pub = get_entry(name).published
    ours = measured(name, pub.input_size)
    agree = (within(ours["params"], pub.params_m, pub.rounding[0])
             and within(ours["macs"], pub.macs_m, pub.rounding[1]))
    assert agree != bool(pub.deviation), (pub.source, pub.deviation, ours)


def test_fbnet_c_deviation_is_the_documented_one():
    """timm's FBNet-C (our twin) has 385M MACs against the paper's 375M: 2.7% over, nothing else."""
    ours = measured("fbnet_c")
    assert 384 < ours["macs"] < 386 and within(ours["params"], 5.5)
