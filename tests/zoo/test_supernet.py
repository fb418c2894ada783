"""The weight-sharing supernet: sub-networks run in place equal the models ``extract`` builds."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from carve.zoo import create_model, get_entry, profile
from carve.zoo.channel_order import channel_groups, importance, sort_channels
from carve.zoo.elastic import ElasticSpace, carve_space, space_from_dict, subnetwork_plan
from carve.zoo.subnets import SubnetError
from carve.zoo.supernet import Supernet, extract, implant, load_supernet, save_supernet


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """BatchNorm statistics and affine terms away from their init, so every channel matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    torch.manual_seed(0)
    net = Supernet("carve", num_classes=10)
    _randomise(net)
    return net.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))


def test_the_largest_subnetwork_is_at_least_carve_125(supernet: Supernet) -> None:
    big, c125 = supernet.spec, get_entry("carve_125").spec()
    assert len(big.blocks) > len(c125.blocks)
    assert max(b.kernel for b in big.blocks) == 5
    assert [s.blocks[0].out_channels for s in big.stages] >= [s.blocks[0].out_channels for s in c125.stages]
    assert sum(p.numel() for p in supernet.parameters()) > sum(p.numel() for p in create_model(c125).parameters())


@pytest.fixture(scope="module")
def compact() -> Supernet:
    torch.manual_seed(0)
    net = Supernet("carve_compact", num_classes=10)
    _randomise(net, 2)
    return net.eval()


def test_the_compact_space_just_contains_carve_125(compact: Supernet) -> None:
    big, c125 = compact.spec, get_entry("carve_125").spec()
    assert [len(s.blocks) for s in big.stages] == [len(s.blocks) for s in c125.stages]
    assert all(b.kernel == 5 for st in big.stages[1:] for b in st.blocks if b.kind == "ir")
    c125_params = sum(p.numel() for p in create_model(c125.with_num_classes(10)).parameters())
    assert c125_params < sum(p.numel() for p in compact.parameters()) < 1.3 * c125_params
    assert profile(create_model(compact.smallest()), 224).macs < profile(create_model("carve_075"), 224).macs / 1.8


@pytest.mark.parametrize("space", ["carve", "carve_compact"])
@pytest.mark.parametrize("name", ["carve_075", "carve_100", "carve_125"])
def test_zoo_carve_models_are_subnetworks(request, images: torch.Tensor, space: str, name: str) -> None:
    supernet = request.getfixturevalue("supernet" if space == "carve" else "compact")
    spec = get_entry(name).spec().with_num_classes(10)
    model = extract(supernet, spec).eval()
    assert model.spec == spec  # the zoo model's own architecture, not an approximation
    supernet.set_active(spec)
    torch.testing.assert_close(supernet(images), model(images), rtol=1e-5, atol=1e-5)


def test_extract_equals_the_active_forward(supernet: Supernet, images: torch.Tensor) -> None:
    rng = random.Random(3)
    specs = [supernet.largest(), supernet.smallest()] + [supernet.sample(rng) for _ in range(4)]
    outputs = []
    for spec in specs:
        spec = supernet.set_active(spec)
        model = extract(supernet, spec).eval()
        assert type(model) is type(create_model(spec)) and model.spec == spec
        ours = supernet(images)
        torch.testing.assert_close(ours, model(images), rtol=1e-5, atol=1e-5)
        outputs.append(ours)
    assert len({s.hash() for s in specs}) == len(specs)
    assert all(not torch.allclose(outputs[0], o, atol=1e-3) for o in outputs[1:])  # really different networks


def test_training_mode_matches_and_updates_only_the_active_statistics(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = Supernet("carve", num_classes=10)
    _randomise(net, 1)
    spec = net.set_active(net.smallest())
    model = extract(net, spec)
    net.train(), model.train()
    before = net.stem.bn.running_mean.clone()
    torch.manual_seed(5)  # the same dropout mask for both
    ours = net(images)
    torch.manual_seed(5)
    torch.testing.assert_close(ours, model(images), rtol=1e-4, atol=1e-4)
    c = spec.stem.channels
    assert not torch.equal(net.stem.bn.running_mean[:c], before[:c])
    assert torch.equal(net.stem.bn.running_mean[c:], before[c:])
    torch.testing.assert_close(net.stem.bn.running_mean[:c], model.stem.bn.running_mean)


def test_sampling_is_seeded_and_stays_in_the_space(supernet: Supernet) -> None:
    assert supernet.sample(7) == supernet.sample(7)
    specs = {supernet.sample(random.Random(s)).hash() for s in range(10)}
    assert len(specs) > 5
    for seed in range(5):
        spec = supernet.sample(seed)
        create_model(spec)
        subnetwork_plan(supernet.spec, spec)
        assert 3 <= spec.blocks[1].kernel <= 5


def test_sort_channels_keeps_the_function_and_puts_important_channels_first(images: torch.Tensor) -> None:
    torch.manual_seed(2)
    net = Supernet("carve", num_classes=10)
    _randomise(net, 2)
    net.eval()
    before = net(images)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    sort_channels(net)
    torch.testing.assert_close(net(images), before, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(state[k], v) for k, v in net.state_dict().items())
    for group in channel_groups(net.spec):
        score = importance(net.state_dict(), group)
        assert torch.all(score[:-1] >= score[1:] - 1e-6)


def test_a_spec_outside_the_supernet_is_refused_by_name(supernet: Supernet) -> None:
    with pytest.raises(SubnetError, match="not a sub-network"):
        supernet.set_active(get_entry("mobilenet_v3_large_100").spec())
    spec = supernet.largest()
    stages = list(spec.stages)
    stages[2] = replace(stages[2], blocks=(replace(stages[2].blocks[0], kernel=7),) + stages[2].blocks[1:])
    with pytest.raises(SubnetError, match=r"stages\[2\]\.blocks\[0\].*kernel 7"):
        extract(supernet, spec.replace(stages=tuple(stages)))


def test_save_and_load_round_trip(supernet: Supernet, images: torch.Tensor, tmp_path) -> None:
    path = save_supernet(supernet, tmp_path / "supernet.safetensors", metrics=dict(note="test"))
    loaded = load_supernet(path).eval()
    assert loaded.space == supernet.space
    for k, v in supernet.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    spec = supernet.sample(11)
    supernet.set_active(spec), loaded.set_active(spec)
    torch.testing.assert_close(loaded(images), supernet(images))
    supernet.set_active(None)
    largest = create_model(path).eval()  # any carve tool reads the file as the largest sub-network
    torch.testing.assert_close(largest(images), supernet(images), rtol=1e-5, atol=1e-5)


def test_implant_writes_a_model_into_its_slices(images: torch.Tensor) -> None:
    torch.manual_seed(4)
    net = Supernet("carve", num_classes=10).eval()
    donor = create_model("carve_100", num_classes=10)
    _randomise(donor, 4)
    donor.eval()
    implant(net, donor)
    torch.testing.assert_close(extract(net, donor.spec).eval()(images), donor(images))
    # its 3x3 kernels sit in the centre of the 5x5 ones with a zero ring: kernel 5 computes the same
    wider = donor.spec.replace(stages=tuple(
        replace(st, blocks=tuple(replace(b, kernel=5) if b.kind == "ir" and si > 0 else b for b in st.blocks))
        for si, st in enumerate(donor.spec.stages)))
    torch.testing.assert_close(extract(net, wider).eval()(images), donor(images), rtol=1e-5, atol=1e-5)


def test_space_round_trips_through_plain_data() -> None:
    space = carve_space(10)
    assert space_from_dict(space.to_dict()) == space
    with pytest.raises(SubnetError, match="expansion"):
        space_from_dict({**space.to_dict(), "stages": [{**space.to_dict()["stages"][0], "expansion": [1, 3]}]})
    assert isinstance(space, ElasticSpace) and space.size() > 10**9


def test_a_shipped_supernet_loads_by_tag(supernet: Supernet, images: torch.Tensor, tmp_path, monkeypatch) -> None:
    from carve.zoo.shipped import publish
    from carve.zoo.supernet import SHIPPED_NAME, supernet_space

    publish(supernet, SHIPPED_NAME, "carve:test-set", dict(space=supernet.space.to_dict()), folder=tmp_path)
    monkeypatch.setenv("CARVE_WEIGHTS_DIR", str(tmp_path))
    assert supernet_space("carve:test-set") == supernet.space
    loaded = load_supernet("carve:test-set").eval()
    spec = supernet.sample(5)
    supernet.set_active(spec), loaded.set_active(spec)
    torch.testing.assert_close(loaded(images), supernet(images), rtol=2e-2, atol=2e-2)  # the shipped file is fp16
    with pytest.raises(Exception, match="no shipped weights"):
        load_supernet("carve:other-set")


def test_reset_classifier_keeps_the_space_in_step() -> None:
    net = Supernet("carve", num_classes=10).eval()
    net.reset_classifier(3)
    assert net.space.num_classes == 3 and net.sample(0).head.num_classes == 3
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3)
