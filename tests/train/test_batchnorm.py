"""BatchNorm recalibration: population statistics of the current weights, no RNG drawn, used by fit."""

from __future__ import annotations

import copy

import torch
from torch import nn

from carve.train import TrainConfig, calibration_loader, fit, recalibrate_bn

from .conftest import TINY_SPEC


def test_recalibration_gives_the_population_statistics_with_dropout_off():
    torch.manual_seed(0)
    conv1, bn1, conv2, bn2 = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.01), nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5)
    model = nn.Sequential(conv1, bn1, nn.ReLU(), nn.Dropout(0.5), conv2, bn2)
    batches = [(torch.randn(8, 3, 10, 10) * 3 + 1, torch.zeros(8, dtype=torch.long), []) for _ in range(5)]

    with torch.no_grad():  # by hand: batch statistics in BN1, no dropout, averaged over the batches
        means1, vars1, means2, vars2 = [], [], [], []
        for x, _, _ in batches:
            h1 = conv1(x)
            m1, v1 = h1.mean((0, 2, 3)), h1.var((0, 2, 3), unbiased=False)
            z = torch.relu((h1 - m1[:, None, None]) / torch.sqrt(v1[:, None, None] + bn1.eps)
                           * bn1.weight[:, None, None] + bn1.bias[:, None, None])
            h2 = conv2(z)
            means1.append(m1), vars1.append(h1.var((0, 2, 3), unbiased=True))
            means2.append(h2.mean((0, 2, 3))), vars2.append(h2.var((0, 2, 3), unbiased=True))

    model.train()
    assert recalibrate_bn(model, batches) == 40
    assert not model.training and not bn1.training and bn1.momentum == 0.01 and bn2.momentum == 0.1
    torch.testing.assert_close(bn1.running_mean, torch.stack(means1).mean(0))
    torch.testing.assert_close(bn1.running_var, torch.stack(vars1).mean(0))
    torch.testing.assert_close(bn2.running_mean, torch.stack(means2).mean(0))
    torch.testing.assert_close(bn2.running_var, torch.stack(vars2).mean(0))
    assert recalibrate_bn(nn.Linear(2, 2), batches) == 0  # nothing to recalibrate


def test_calibration_loader_is_fixed_and_draws_no_global_randomness(tiny_data):
    state = torch.get_rng_state()
    first = [(x.clone(), y.clone()) for x, y, _ in calibration_loader(tiny_data, 32, 8, batches=3, per_class=24)]
    second = [(x, y) for x, y, _ in calibration_loader(tiny_data, 32, 8, batches=3, per_class=24)]
    assert torch.equal(torch.get_rng_state(), state)
    assert [len(y) for _, y in first] == [8, 8, 8]
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(first, second))
    assert len({int(c) for _, y in first for c in y}) > 1  # shuffled, not one class per batch


def test_fit_evaluates_with_recalibrated_statistics(tiny_data, tmp_path):
    spec = dict(TINY_SPEC, norm={"eps": 1e-3, "momentum": 0.01})
    cfg = TrainConfig(model=spec, data=str(tiny_data), out_dir=str(tmp_path), epochs=1, batch_size=16, lr=0.2,
                      base_batch_size=0, workers=0, progress=False, warmup_epochs=0.0, tensorboard=False,
                      cutmix_alpha=0.0, train_per_class=24, bn_recalibration=3)
    result = fit(cfg)
    again = copy.deepcopy(result.model)
    recalibrate_bn(again, calibration_loader(tiny_data, 32, 16, batches=3, per_class=24))
    for (name, a), b in zip(result.model.named_buffers(), again.buffers()):
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(a, b)
    stale = fit(TrainConfig(**{**cfg.to_dict(), "bn_recalibration": 0, "out_dir": str(tmp_path / "stale")}))
    bn = dict(result.model.named_buffers())
    drift = [(bn[k] - v).abs().max() for k, v in stale.model.named_buffers() if k.endswith("running_mean")]
    assert max(drift) > 1e-3  # the same weights, but statistics of the current ones, not a 1% average
