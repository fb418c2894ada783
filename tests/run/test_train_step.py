"""The run's train step starts the found model from where the search scored it."""

import random

import torch

from carve.run import load_config
from carve.run.state import RunState
from carve.run.train_step import starting_points
from carve.zoo.supernet import Supernet, extract, save_supernet


def test_found_model_starts_from_the_supernet_weights_it_was_scored_with(tmp_path, test_weights, monkeypatch):
    monkeypatch.setenv("CARVE_WEIGHTS_DIR", str(test_weights))
    torch.manual_seed(0)
    supernet = Supernet("carve_compact", num_classes=202)
    path = save_supernet(supernet, tmp_path / "supernet.safetensors")
    spec = supernet.sample(random.Random(3))
    state = RunState(tmp_path / "run")
    spec.save(state.step_dir("search") / "best_spec.json")
    search = dict(supernet=str(path), num_classes=202, best=dict(spec="search/best_spec.json"))

    models, footing = starting_points(load_config(tiny=True), state, dict(hand_designed="mobilenet_v3_large_100"),
                                      search)

    found = models["found"].eval()
    expected = extract(supernet, spec).eval()
    x = torch.randn(2, 3, 64, 64)
    assert found.spec.name == "carve_found"
    torch.testing.assert_close(found(x), expected(x))
    assert "supernet" in footing and str(path) in footing
    assert models["hand_designed"].num_classes == 202
