"""The shared loop pieces on a small real model: schedule, one step, the non-finite stop, checkpoint and resume."""

import pytest
import torch
from torch import nn

from carve.train import LoopState, NonFiniteLoss, build_optimizer, build_scheduler, plan_schedule
from carve.train.engine import epoch_row, optimizer_step, resume, run_epoch, save, trainable_state


def _state(tmp_path, seed=0) -> LoopState:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = build_optimizer(model, 0.1)
    return LoopState(model, optimizer, build_scheduler(optimizer, 6, 1), torch.device("cpu"), total_steps=6,
                     progress=False, checkpoint_path=tmp_path / "last.pt")


def _batches(n=4):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)) for _ in range(n)]


def _loss_fn(state):
    def loss_of(batch):
        x, y = batch
        return nn.functional.cross_entropy(state.model(x), y), len(x), {"half": torch.tensor(0.5)}
    return loss_of


def test_plan_schedule_caps_steps_and_counts_the_epochs_they_span():
    assert plan_schedule(3, 10) == (30, 3)
    assert plan_schedule(3, 10, max_steps=14) == (14, 2)
    with pytest.raises(ValueError, match="no full batch"):
        plan_schedule(3, 0)


def test_epochs_stop_at_the_step_budget_and_resume_exactly(tmp_path):
    state = _state(tmp_path)
    first = run_epoch(state, state.model, _batches(), _loss_fn(state))
    assert (state.epoch, state.step, first["images"]) == (1, 4, 32)
    assert first["half"] == pytest.approx(0.5) and epoch_row(state, first)["loss_half"] == pytest.approx(0.5)
    save(state, "unit")
    run_epoch(state, state.model, _batches(), _loss_fn(state))
    assert (state.epoch, state.step) == (2, 6)  # the budget of 6 steps ends the second epoch early

    again = _state(tmp_path, seed=1)
    resume(again, tmp_path / "last.pt", "unit")
    assert (again.epoch, again.step) == (1, 4)
    run_epoch(again, again.model, _batches(), _loss_fn(again))
    for k, v in state.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a carve other checkpoint"):
        resume(_state(tmp_path), tmp_path / "last.pt", "other")


def test_non_finite_loss_stops_before_the_weights_change(tmp_path):
    state = _state(tmp_path)
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    x, y = _batches(1)[0]
    with pytest.raises(NonFiniteLoss, match=r"loss became inf at epoch 1, step 1.*last\.pt"):
        optimizer_step(state, nn.functional.cross_entropy(state.model(x), y) * float("inf"))
    assert state.step == 0 and all(torch.equal(before[k], v) for k, v in state.model.state_dict().items())


def _frozen_base_state(tmp_path, seed=0, base="a") -> LoopState:
    """A model whose first layer and norm are a frozen base; the last layer (with its own BatchNorm) trains."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2), nn.BatchNorm1d(2))
    for p in list(model[0].parameters()) + list(model[1].parameters()):
        p.requires_grad_(False)
    optimizer = build_optimizer(model, 0.1)
    return LoopState(model, optimizer, build_scheduler(optimizer, 6, 1), torch.device("cpu"), total_steps=6,
                     progress=False, checkpoint_path=tmp_path / "last.pt", trainable_only=True, base=dict(name=base))


def test_trainable_only_checkpoints_hold_what_trains_and_resume_onto_the_same_base(tmp_path):
    state = _frozen_base_state(tmp_path)
    assert set(trainable_state(state.model)) == {"3.weight", "3.bias", "4.weight", "4.bias", "4.running_mean",
                                                 "4.running_var", "4.num_batches_tracked"}
    run_epoch(state, state.model, _batches(), _loss_fn(state))
    save(state, "unit")
    held = torch.load(tmp_path / "last.pt", weights_only=True)
    assert set(held["model"]) == set(trainable_state(state.model)) and held["base"] == dict(name="a")
    run_epoch(state, state.model, _batches(), _loss_fn(state))

    again = _frozen_base_state(tmp_path, seed=0)  # the same base (same seed); the trained part restored
    with torch.no_grad():
        again.model[3].weight.zero_()
    resume(again, tmp_path / "last.pt", "unit")
    run_epoch(again, again.model, _batches(), _loss_fn(again))
    for k, v in state.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v, rtol=0, atol=0)
    with pytest.raises(ValueError, match="trained on another base model: name a there, b here"):
        resume(_frozen_base_state(tmp_path, base="b"), tmp_path / "last.pt", "unit")
    with pytest.raises(ValueError, match="holds only trainable parameters"):
        resume(_state(tmp_path), tmp_path / "last.pt", "unit")
