"""Search over a supernet's sub-networks: ``--supernet FILE`` runs a study scored with the supernet's weights."""

from __future__ import annotations

import json
import random

import pytest
import torch

from carve.cli import main
from carve.search import SearchConfig
from carve.search.spaces import SupernetSpace, get_space, parse_space
from carve.search.spaces.choices import SpaceError
from carve.search.storage import load_study
from carve.search.supernet_accuracy import SupernetAccuracy
from carve.zoo import create_model, get_entry, parse_spec
from carve.zoo.elastic import subnetwork_plan
from carve.zoo.supernet import Supernet, extract, load_supernet, save_supernet

from ..train.conftest import copy_subset
from ..train.test_supernet_training import TINY


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return copy_subset(tmp_path_factory.mktemp("cifar_search"), 8, 4)


@pytest.fixture(scope="module")
def supernet_file(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    return save_supernet(Supernet(TINY), tmp_path_factory.mktemp("supernet") / "tiny.safetensors")


def test_a_three_trial_study_over_a_supernet(data, supernet_file, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["search", "run", "--supernet", str(supernet_file), "--runtime", "eager", "--trials", "3",
                 "--quick-latency", "--latency-cache", "off", "--threads", "1", "--latency-size", "32",
                 "--data", str(data), "--img-size", "32", "--num-classes", "4", "--batch-size", "16",
                 "--val-per-class", "4", "--bn-recalibration", "1", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["study_name"] == "supernet_tiny-supernet" and result["n_complete"] == 3
    study = load_study(result["study_name"], result["storage"])
    largest = TINY.largest()
    for trial in study.get_trials(deepcopy=False):
        spec = parse_spec(trial.user_attrs["spec"])
        assert create_model(spec).spec == spec
        subnetwork_plan(largest, spec.with_num_classes(TINY.num_classes))
        assert 0.0 <= trial.user_attrs["accuracy"] <= 100.0
        assert trial.user_attrs["latency_ms"] > 0
    assert study.user_attrs["carve"]["objective"]["accuracy"] == "supernet"


def test_the_estimator_scores_the_extracted_subnetwork(data, supernet_file) -> None:
    est = SupernetAccuracy(str(supernet_file), str(data), 32, batch_size=16, calibration_batches=1, val_per_class=4)
    spec = est.supernet.sample(random.Random(2))
    model = est.model(spec)
    reference = extract(est.supernet, spec)
    assert model.spec == reference.spec
    assert not torch.equal(model.stem.bn.running_mean, reference.stem.bn.running_mean)  # re-estimated on the data
    images = torch.cat([b[0] for b in est.held_out])
    labels = torch.cat([b[1] for b in est.held_out])
    with torch.no_grad():
        expected = 100.0 * (model(images).argmax(1) == labels).float().mean().item()
    assert est(spec) == pytest.approx(expected)


def test_supernet_config_and_space_files(supernet_file, tmp_path) -> None:
    cfg = SearchConfig(supernet=str(supernet_file), out_dir=str(tmp_path))
    assert cfg.objective.accuracy == "supernet" and cfg.objective.supernet == str(supernet_file)
    space = cfg.load_space()
    assert isinstance(space, SupernetSpace) and space.size() == TINY.size()
    assert SearchConfig.from_dict(cfg.to_dict()).load_space() == space
    with pytest.raises(ValueError, match="objective.accuracy"):
        SearchConfig(supernet=str(supernet_file), objective=dict(accuracy="synflow"))
    path = tmp_path / "s.yaml"
    path.write_text(f"name: mine\nkind: supernet\nsupernet: {supernet_file}\nresolution: [32]\n")
    parsed = get_space(str(path))
    assert parsed.name == "mine" and parsed.elastic.resolution == (32,)
    spec, res, params = parsed.sample_random(4)
    assert res == 32 and parsed.decode(params)[0] == spec
    with pytest.raises(SpaceError, match="supernet"):
        parse_space({"name": "x", "kind": "supernet", "supernet": str(tmp_path / "missing.safetensors")})


def test_warm_start_maps_a_zoo_model_to_its_nearest_subnetwork() -> None:
    from carve.zoo.elastic import carve_space

    space = SupernetSpace(name="carve", supernet="unused")
    object.__setattr__(space, "elastic", carve_space(10))  # the built-in space without a file
    params = space.nearest(get_entry("carve_100").spec())
    spec, _ = space.decode({**{k: min(v) for k, v in space.elastic.choices() if len(v) > 1}, **params})
    c100 = get_entry("carve_100").spec()
    assert [len(s.blocks) for s in spec.stages] == [len(s.blocks) for s in c100.stages]
    assert spec.stem.channels == c100.stem.channels and spec.blocks[-1].out_channels == c100.blocks[-1].out_channels


def test_references_of_a_supernet_study_are_extracted_or_refused(data, supernet_file, tmp_path) -> None:
    from carve.search import run_search
    from carve.search.references import score_references

    from .conftest import fast_objective

    cfg = SearchConfig(supernet=str(supernet_file), out_dir=str(tmp_path), trials=1, progress=False, remeasure=False,
                       objective=fast_objective(accuracy="supernet", supernet=str(supernet_file), data=str(data),
                                                num_classes=4, batch_size=16, val_per_class=4, bn_recalibration=1))
    study = load_study(run_search(cfg).study_name, cfg.storage_url)
    with pytest.raises(ValueError, match="not a sub-network"):
        score_references(study, ["mobilenet_v3_small_100"], tmp_path)


def test_data_with_other_classes_than_the_supernet_is_refused(data, tmp_path) -> None:
    torch.manual_seed(0)
    other = save_supernet(Supernet(TINY.with_num_classes(7)), tmp_path / "seven.safetensors")
    with pytest.raises(ValueError, match="4 classes, the supernet predicts 7"):
        SupernetAccuracy(str(other), str(data), 32, batch_size=16, calibration_batches=1, val_per_class=4)


def test_the_winner_exports_as_spec_plus_weights_finetuned_with_the_supernet_as_teacher(data, supernet_file,
                                                                                       tmp_path, capsys) -> None:
    from carve.search import run_search
    from carve.search.winner import export_winner
    from carve.train import TrainConfig
    from carve.zoo import load_spec

    from .conftest import fast_objective

    cfg = SearchConfig(supernet=str(supernet_file), out_dir=str(tmp_path / "run"), trials=2, progress=False,
                       remeasure=False, objective=fast_objective(accuracy="supernet", supernet=str(supernet_file),
                                                                 data=str(data), num_classes=4, batch_size=16,
                                                                 val_per_class=4, bn_recalibration=1))
    name = run_search(cfg).study_name
    plain = export_winner(name, cfg.storage_url, tmp_path / "plain", trial=1, bn_batches=0)
    study = load_study(name, cfg.storage_url)
    spec = Supernet(TINY).fit_spec(parse_spec(study.trials[1].user_attrs["spec"]))
    assert plain.trial == 1 and plain.top1 is None and load_spec(plain.spec_path) == spec.replace(name="winner")
    exported = create_model(str(plain.weights_path))
    reference = extract(load_supernet(supernet_file), spec)
    assert exported.spec == spec.replace(name="winner")
    for (k, a), b in zip(exported.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a.float(), b.float()), k  # without BN re-estimation or finetune: the supernet's slices

    assert main(["search", "export", name, "--out", str(tmp_path / "run"), "--trial", "1", "--weights",
                 str(tmp_path / "tuned" / "mine.safetensors"), "--finetune-epochs", "1", "--train-per-class", "4",
                 "--batch-size", "8"]) == 0
    assert "held-out top-1" in capsys.readouterr().out
    tuned = create_model(str(tmp_path / "tuned" / "mine.safetensors"))
    assert tuned.spec == spec.replace(name="mine") and (tmp_path / "tuned" / "mine.json").is_file()
    moved = [k for k, v in tuned.state_dict().items() if v.is_floating_point()
             and not torch.equal(v.float(), reference.state_dict()[k].float())]
    assert any(k.endswith(".weight") for k in moved)  # trained, not only BN statistics re-estimated

    assert main(["search", "export", name, "--out", str(tmp_path / "run"), "--weights", str(tmp_path / "w.pt")]) == 2
    assert "--weights" in capsys.readouterr().err and not (tmp_path / "w.pt").exists()
    params_cfg = SearchConfig(space="mbconv", out_dir=str(tmp_path / "p"), trials=1, progress=False, remeasure=False,
                              objective=fast_objective())
    with pytest.raises(ValueError, match="not a search over a supernet"):
        export_winner(run_search(params_cfg).study_name, params_cfg.storage_url, tmp_path / "x",
                      finetune=TrainConfig())
