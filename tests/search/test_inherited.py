"""Search over channel sub-networks that inherit a pretrained model's weights (real Tiny ImageNet shards)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from carve.search import ObjectiveConfig, SearchConfig, run_search
from carve.search.inherited import InheritedAccuracy
from carve.search.spaces import SpaceError, parse_space
from carve.zoo import create_model, save_weights

TINY_IMAGENET = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tiny-imagenet"
SPACE = dict(name="sub", kind="subnets", base="carve_075", keep=[0.5, 1.0], head=[0.5, 1.0], resolution=[32])


@pytest.fixture(scope="module")
def shard(tmp_path_factory) -> Path:
    if not (TINY_IMAGENET / "train-0000.tar.gz").is_file():
        pytest.skip(f"Tiny ImageNet shards not found at {TINY_IMAGENET}")
    out = tmp_path_factory.mktemp("shard")
    for name in ("train-0000.tar.gz", "classes.txt"):
        shutil.copy(TINY_IMAGENET / name, out / name)
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return save_weights(create_model("carve_075", num_classes=202), tmp_path_factory.mktemp("src") / "src.safetensors")


def test_the_full_width_candidate_scores_as_the_source_itself(shard: Path, source: Path):
    space = parse_space(SPACE)
    full = space.decode({"s1.keep": 1.0, "s2.keep": 1.0, "s3.keep": 1.0, "s4.keep": 1.0, "head.keep": 1.0})[0]
    half = space.decode({"s1.keep": 0.5, "s2.keep": 0.5, "s3.keep": 0.5, "s4.keep": 0.5, "head.keep": 0.5})[0]
    score = InheritedAccuracy(str(source), str(shard), 32, batch_size=32, calibration_batches=0, val_per_class=1)
    from carve.train import evaluate

    assert score(full) == pytest.approx(evaluate(create_model(source).eval(), score.held_out, device="cpu")["top1"])
    assert 0.0 <= score(half) <= 100.0


def test_a_search_over_sub_networks_runs_end_to_end(shard: Path, source: Path, tmp_path: Path):
    objective = ObjectiveConfig(accuracy="inherited", inherit_from=str(source), data=str(shard), num_classes=202,
                                img_size=32, small_input=0, batch_size=32, bn_recalibration=1, val_per_class=1,
                                latency="none")
    space_file = tmp_path / "sub.yaml"
    space_file.write_text("\n".join(f"{k}: {v}" for k, v in SPACE.items()) + "\n")
    result = run_search(SearchConfig(space=str(space_file), objective=objective, out_dir=str(tmp_path / "run"),
                                     trials=3, progress=False, remeasure=False))
    assert result.n_complete == 3 and result.n_failed == 0
    assert all(0.0 <= e.accuracy <= 100.0 for e in result.pareto)


def test_bad_subnet_spaces_name_the_field():
    with pytest.raises(SpaceError, match="sub.base: unknown model"):
        parse_space(dict(SPACE, base="carve_999"), "sub")
    with pytest.raises(SpaceError, match=r"sub.keep: expected fractions in \(0, 1\]"):
        parse_space(dict(SPACE, keep=[0.0, 1.0]), "sub")
    with pytest.raises(SpaceError, match="sub.stages: carve_075 has stages 0-4"):
        parse_space(dict(SPACE, stages=[7]), "sub")
    from carve.search import Objective

    with pytest.raises(ValueError, match="inherit_from"):
        Objective(ObjectiveConfig(accuracy="inherited")).inherited()
