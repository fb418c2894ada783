"""Sandwich-rule supernet training on a few real CIFAR-10 images: it learns, shares, and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from carve.train.supernet_training import SupernetTrainConfig, sandwich, train_supernet
from carve.zoo import create_model
from carve.zoo.elastic import ElasticSpace, ElasticStage
from carve.zoo.supernet import load_supernet

from .conftest import copy_subset

TINY = ElasticSpace(
    name="tiny", stem=(8, 16), last_conv=(32, 64), head=64, resolution=(24, 32), dropout=0.0, num_classes=4,
    stages=(ElasticStage(depth=(1,), width=(8, 16), kernel=(3,), expansion=(1,), stride=1, act="relu", se=(False,)),
            ElasticStage(depth=(1, 2), width=(16, 24), kernel=(3, 5), expansion=(2, 3), stride=2, act="relu",
                         se=(False, True)),
            ElasticStage(depth=(1, 2), width=(24, 32), kernel=(3, 5), expansion=(2, 3), stride=2, act="hardswish",
                         se=(True, True))))


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return copy_subset(tmp_path_factory.mktemp("cifar_supernet"), 12, 4)


@pytest.fixture(scope="module")
def space_file(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("space") / "tiny.json"
    path.write_text(json.dumps(TINY.to_dict()))
    return path


def config(data, space_file, out, **kw) -> SupernetTrainConfig:
    base = dict(space=str(space_file), data=str(data), out_dir=str(out), epochs=6, batch_size=16, lr=0.1,
                base_batch_size=0, warmup_epochs=0.0, label_smoothing=0.0, aug="none", img_size=32,
                resolutions=(24, 32), random_subnets=2, bn_recalibration=2, eval_every=3, workers=0, device="cpu",
                progress=False, seed=3)
    base.update(kw)
    return SupernetTrainConfig(**base)


def test_sandwich_is_largest_smallest_and_seeded_random_ones() -> None:
    arms = sandwich(5, 0, TINY, (24, 32), 3)
    assert [a[0] for a in arms] == ["largest", "smallest", "random", "random", "random"]
    assert arms[0][1] == TINY.largest() and arms[0][2] == 32
    assert arms[1][1] == TINY.smallest() and arms[1][2] == 24
    assert arms == sandwich(5, 0, TINY, (24, 32), 3)
    assert arms != sandwich(6, 0, TINY, (24, 32), 3)


def test_training_lowers_the_loss_and_moves_shared_weights(data, space_file, tmp_path) -> None:
    cfg = config(data, space_file, tmp_path / "run", lr=0.3)
    torch.manual_seed(cfg.seed)
    from carve.zoo.supernet import Supernet

    before = Supernet(TINY).state_dict()
    before = {k: v.clone() for k, v in before.items()}
    result = train_supernet(cfg)
    hist = result.history
    # the largest fits the labels; the others' distillation terms rise from ~0 as its outputs sharpen
    assert hist[-1]["loss_largest"] < 0.75 * hist[0]["loss_largest"]
    assert hist[-1]["loss_smallest"] > hist[0]["loss_smallest"]
    after = result.supernet.state_dict()
    small = TINY.smallest().stem.channels
    assert not torch.equal(after["stem.conv.weight"][:small], before["stem.conv.weight"][:small])  # shared by all
    assert not torch.equal(after["stem.conv.weight"][small:], before["stem.conv.weight"][small:])  # wider ones only
    assert not torch.equal(after["blocks.2.1.conv_pwl.conv.weight"], before["blocks.2.1.conv_pwl.conv.weight"])
    assert {"top1_largest", "top1_smallest"} <= set(hist[-1])
    loaded = load_supernet(result.final_path)
    assert loaded.space == TINY
    spec = loaded.sample(1)
    assert create_model(spec).spec == spec


def test_resume_continues_exactly(data, space_file, tmp_path) -> None:
    straight = train_supernet(config(data, space_file, tmp_path / "a", epochs=2, eval_every=2)).supernet.state_dict()

    def stop_after_first(row: dict) -> None:
        if row["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train_supernet(config(data, space_file, tmp_path / "b", epochs=2, eval_every=2), on_epoch=stop_after_first)
    resumed = train_supernet(config(data, space_file, tmp_path / "b", epochs=2, eval_every=2, resume=True))
    assert resumed.history[0]["epoch"] == 1 and len(resumed.history) == 2
    for key, value in straight.items():
        assert torch.equal(resumed.supernet.state_dict()[key], value), key


def test_initialising_from_shipped_weights_makes_that_subnetwork_the_shipped_model() -> None:
    from carve.train.supernet_training import initialise_from
    from carve.zoo.shipped import manifest
    from carve.zoo.supernet import Supernet, extract

    if "carve_100" not in manifest().get("carve:tiny-imagenet", {}):
        pytest.skip("carve_100 weights for carve:tiny-imagenet do not ship in this checkout")
    shipped = create_model("carve_100", pretrained="carve:tiny-imagenet").eval()
    classes = shipped.spec.head.num_classes
    torch.manual_seed(0)
    net = Supernet("carve", num_classes=classes)
    initialise_from(net, "carve_100@carve:tiny-imagenet", classes)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(extract(net, shipped.spec).eval()(images), shipped(images), rtol=1e-4, atol=1e-4)
