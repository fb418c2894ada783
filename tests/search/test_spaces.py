import copy

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carve.search.spaces import BUILTIN_DIR, SpaceError, get_space, list_spaces, load_space, parse_space
from carve.zoo import ArchSpec, create_model, parse_spec

BUILTIN = ["mbconv", "carve", "shuffle", "mnv4"]
_SPACES = {name: get_space(name) for name in BUILTIN}


def test_builtins_are_listed():
    assert set(BUILTIN) <= set(list_spaces())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(BUILTIN), seed=st.integers(0, 2**31 - 1))
def test_every_sample_is_a_spec_create_model_builds(name, seed):
    space = _SPACES[name]
    spec, resolution, params = space.sample_random(seed)
    assert isinstance(spec, ArchSpec)
    assert resolution in space.resolution
    assert parse_spec(spec.to_dict()) == spec  # survives validation and JSON round trip
    model = create_model(spec)
    assert sum(p.numel() for p in model.parameters()) > 0
    again, res_again = space.decode(params)  # a finished trial's params rebuild the same spec
    assert again == spec and res_again == resolution
    # depth and per-block choices land where the space says
    for si, stage in enumerate(space.stages):
        depth = params.get(f"s{si}.depth", stage.depth[0])
        assert depth in stage.depth
        assert len(spec.stages[si].blocks) - (1 if si == len(space.stages) - 1 and spec.stages[si].blocks[-1].kind == "conv" else 0) == depth


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(BUILTIN), seed=st.integers(0, 2**31 - 1))
def test_the_nearest_point_of_a_sample_is_the_sample(name, seed):
    space = _SPACES[name]
    spec, resolution, _ = space.sample_random(seed)
    assert space.decode(space.nearest(spec, resolution)) == (spec, resolution)


@pytest.mark.parametrize("space_name, model", [("carve", "carve_100"), ("mbconv", "mobilenet_v3_large_100"),
                                               ("shuffle", "shufflenet_v2_100")])
def test_zoo_models_project_to_close_points(space_name, model):
    space, zoo = _SPACES[space_name], create_model(model).spec
    near, _ = space.decode(space.nearest(zoo))
    body = lambda s: [b for st in s.stages for b in st.blocks if b.kind != "conv"]  # noqa: E731
    assert len(body(near)) == len(body(zoo))  # same depth per stage here
    for a, b in zip(body(near), body(zoo)):
        assert a.stride == b.stride and a.kernel == b.kernel
    widths = [b.out_channels for b in body(zoo)]
    assert all(abs(a.out_channels - w) <= 0.3 * w for a, w in zip(body(near), widths))


def test_mobilenet_v4_projects_onto_the_uib_space_block_by_block():
    """MobileNetV4-Conv-M's UIB variants (start, middle kernel) and widths land in the mnv4 space."""
    space, zoo = _SPACES["mnv4"], create_model("mobilenet_v4_conv_medium").spec
    near, _ = space.decode(space.nearest(zoo))
    assert {b.kind for b in near.blocks} == {"uib", "conv"}
    for si in (1, 2, 3):
        ours, theirs = near.stages[si].blocks, zoo.stages[si].blocks
        assert ours[0].stride == 2 and ours[-1 if si < 3 else -2].out_channels == theirs[0].out_channels
        pairs = [(b.start_kernel, b.kernel) for b in ours if b.kind == "uib"]
        assert pairs == [(b.start_kernel, b.kernel) for b in theirs[:len(pairs)]]
        assert [b.mid_channels for b in ours if b.kind == "uib"] == [b.mid_channels for b in theirs[:len(pairs)]]
    # every UIB variant is reachable: ExtraDW, IB, ConvNeXt-like and FFN blocks all occur
    variants = {(b.start_kernel > 0, b.kernel > 0) for b in near.blocks if b.kind == "uib"}
    assert variants == {(True, True), (False, True), (True, False), (False, False)}


def test_uib_space_errors_name_the_field():
    data = yaml.safe_load((BUILTIN_DIR / "mnv4.yaml").read_text())
    data["stages"][1]["kernel"] = [0]
    with pytest.raises(SpaceError, match=r"stages\[1\]\.kernel: a stride-2 uib stage needs"):
        parse_space(data)
    data = yaml.safe_load((BUILTIN_DIR / "mnv4.yaml").read_text())
    data["stages"][2]["start_kernel"] = [2]
    with pytest.raises(SpaceError, match=r"stages\[2\]\.start_kernel: expected 0 \(none\) or odd"):
        parse_space(data)
    mb = yaml.safe_load((BUILTIN_DIR / "mbconv.yaml").read_text())
    mb["stages"][1]["start_kernel"] = 3
    with pytest.raises(SpaceError, match=r"stages\[1\]\.start_kernel: only uib spaces"):
        parse_space(mb)


def test_nearest_refuses_a_different_stage_count():
    with pytest.raises(SpaceError, match="warm_start: mobilenet_v2_100 has 7 stages"):
        _SPACES["carve"].nearest(create_model("mobilenet_v2_100").spec)


@pytest.mark.parametrize("name", BUILTIN)
def test_samples_run_forward(name):
    spec, _, _ = _SPACES[name].sample_random(3)
    model = create_model(spec, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 10)


def test_mbconv_space_is_once_for_all_shaped():
    space = _SPACES["mbconv"]
    searched = [s for s in space.stages if len(s.depth) > 1]
    assert len(searched) == 5
    for s in searched:
        assert s.depth == (2, 3, 4) and s.kernel == (3, 5, 7) and s.expansion == (3, 4, 6)


def test_samples_differ_and_are_seeded():
    space = _SPACES["carve"]
    a = space.sample_random(1)[0]
    assert space.sample_random(1)[0] == a
    assert len({space.sample_random(s)[0].hash() for s in range(10)}) > 5


def _raw(name: str) -> dict:
    from carve.search.spaces import BUILTIN_DIR

    return yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["stages"][1].__setitem__("kernel", [3, 4]), "stages[1].kernel"),
    (lambda d: d["stages"][2].__setitem__("depth", [0, 2]), "stages[2].depth"),
    (lambda d: d["stages"][1].__setitem__("stride", 3), "stages[1].stride"),
    (lambda d: d["stages"][1].__setitem__("colour", "red"), "stages[1].colour"),
    (lambda d: d.__setitem__("activation", ["relu", "gelu"]), "activation"),
    (lambda d: d.__setitem__("block", "resnet"), "block"),
    (lambda d: d.__setitem__("resolution", []), "resolution"),
    (lambda d: d["stages"][0].pop("width"), "stages[0].width"),
])
def test_invalid_space_names_the_field(mutate, field):
    data = copy.deepcopy(_raw("mbconv"))
    mutate(data)
    with pytest.raises(SpaceError) as err:
        parse_space(data)
    assert field in str(err.value)


def test_odd_shuffle_width_is_rejected_with_field(tmp_path):
    data = _raw("shuffle")
    data["stages"][1]["width"] = [96, 97]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert str(path) in str(err.value) and "stages[1].width" in str(err.value) and "97" in str(err.value)


def test_unknown_space_and_unparsable_file(tmp_path):
    with pytest.raises(KeyError, match="mbconv"):
        get_space("nosuch")
    bad = tmp_path / "x.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpaceError, match="cannot parse"):
        load_space(bad)
