"""Recipe pieces: optimizer groups, schedule, CutMix/MixUp targets, KD loss, checkpoints and RNG."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from carve.train import (BatchMixer, TrainConfig, build_optimizer, build_scheduler, capture_rng, kd_loss,
                         load_checkpoint, restore_rng, save_checkpoint)
from carve.zoo import create_model

from .conftest import TINY_SPEC


def test_no_weight_decay_on_bn_and_bias():
    model = create_model(TINY_SPEC)
    opt = build_optimizer(model, lr=0.1, weight_decay=0.5)
    names = {n: g["weight_decay"] for g in opt.param_groups for n in g["names"]}
    assert set(names) == {n for n, _ in model.named_parameters()}
    modules = dict(model.named_modules())
    for name, wd in names.items():
        owner = modules[name.rsplit(".", 1)[0]]
        no_decay = isinstance(owner, torch.nn.BatchNorm2d) or name.endswith(".bias")
        assert wd == (0.0 if no_decay else 0.5), name
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    # one step with zero gradients: only decayed tensors move
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(before[n], p.detach())
        assert moved == (names[n] > 0) or before[n].abs().sum() == 0, n


def test_lr_scale_prefixes():
    model = create_model(TINY_SPEC)
    opt = build_optimizer(model, lr=0.2, lr_scale={"stem.": 0.1, "stages.0.": 0.5})
    for g in opt.param_groups:
        for n in g["names"]:
            expected = 0.02 if n.startswith("stem.") else 0.1 if n.startswith("stages.0.") else 0.2
            assert g["lr"] == pytest.approx(expected), n


def test_warmup_cosine_per_step():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, total_steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # linear ramp up
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then monotone decay
    assert lrs[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lrs[-1] < 0.001


@pytest.mark.parametrize("mixup,cutmix,switch", [(0.2, 0.0, 0.5), (0.0, 1.0, 0.5), (0.4, 1.0, 0.5)])
def test_mixed_targets_sum_to_one(mixup, cutmix, switch):
    torch.manual_seed(0)
    mixer = BatchMixer(10, mixup_alpha=mixup, cutmix_alpha=cutmix, prob=1.0, switch_prob=switch)
    images, targets = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    mixed_batches = 0
    for _ in range(6):
        mixed, soft = mixer(images, targets)
        assert mixed.shape == images.shape and soft.shape == (8, 10)
        assert torch.allclose(soft.sum(1), torch.ones(8))
        assert (soft >= 0).all()
        changed = not torch.equal(mixed, images)
        assert changed == bool((soft.max(1).values < 1 - 1e-6).any())  # labels mixed iff pixels mixed
        mixed_batches += changed
    assert mixed_batches >= 3


def test_mixer_prob_zero_gives_one_hot():
    mixer = BatchMixer(5, mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.0)
    images, targets = torch.randn(4, 3, 8, 8), torch.tensor([0, 4, 2, 2])
    mixed, soft = mixer(images, targets)
    assert torch.equal(mixed, images) and torch.equal(soft, F.one_hot(targets, 5).float())


def test_kd_loss_matches_hand_computation():
    torch.manual_seed(1)
    s, t, temp = torch.randn(3, 5), torch.randn(3, 5), 3.0
    expected = 0.0
    for i in range(3):
        ps = [math.exp(v / temp) for v in s[i].tolist()]
        pt = [math.exp(v / temp) for v in t[i].tolist()]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    expected = expected / 3 * temp ** 2
    assert kd_loss(s, t, temp).item() == pytest.approx(expected, rel=1e-5)
    assert kd_loss(t, t, temp).item() == pytest.approx(0.0, abs=1e-6)


def test_checkpoint_roundtrip_and_rng(tmp_path):
    state = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(3))
    path = save_checkpoint(tmp_path / "ck.pt", dict(rng=state, step=3, w=torch.arange(4)))
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_checkpoint(path)
    restore_rng(loaded["rng"])
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert loaded["step"] == 3 and torch.equal(loaded["w"], torch.arange(4))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="TrainConfig.aug"):
        TrainConfig(aug="extreme")
    with pytest.raises(ValueError, match="mix_prob"):
        TrainConfig(mix_prob=1.5)
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"epochz": 3})
