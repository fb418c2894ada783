"""The training loop on real CIFAR-10 images: learning, outputs, exact resume, NaN stop, corrupt files."""

from __future__ import annotations

import csv
import logging
import shutil

import pytest
import torch

from carve.train import NonFiniteLoss, TrainConfig, evaluate, fit, load_checkpoint, train_loader
from carve.train import loop as loop_module
from carve.zoo import create_model

from .conftest import TINY_SPEC


def config(data, out, **kw) -> TrainConfig:
    base = dict(model=TINY_SPEC, data=str(data), out_dir=str(out), epochs=2, batch_size=16, lr=0.2,
                base_batch_size=0, workers=0, progress=False, warmup_epochs=0.5, seed=0, tensorboard=False)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases_and_outputs_are_written(tiny_data, tmp_path):
    seen = []
    result = fit(config(tiny_data, tmp_path, epochs=4, cutmix_alpha=0.0, label_smoothing=0.0, ema_decay=0.9,
                        tensorboard=True),
                 on_epoch=lambda row: seen.append((row["epoch"], row["top1"], (tmp_path / "last.pt").is_file())))
    assert seen == [(h["epoch"], h["top1"], True) for h in result.history]  # per epoch, after its checkpoint
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.85 * losses[0], losses
    assert result.final_top1 > 35.0  # 4 classes: chance is 25 %
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["images_per_s"]) > 0 and r["ema_top1"] for r in rows)
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    # the best weights load through the zoo and reproduce their recorded accuracy
    best = create_model(result.best_path)
    again = evaluate(best, tiny_data, img_size=32, batch_size=32, workers=0)
    assert again["top1"] == pytest.approx(result.best_top1)
    assert again["n"] == 64
    final = evaluate(create_model(tmp_path / "final.safetensors"), tiny_data, img_size=32, workers=0)
    assert final["top1"] == pytest.approx(result.final_top1)


class _Interrupting:
    """A loader proxy that raises KeyboardInterrupt after ``after`` batches."""

    def __init__(self, loader, after: int):
        self.loader, self.after = loader, after

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.after:
                raise KeyboardInterrupt
            yield batch


def test_resume_continues_exactly(tiny_data, tmp_path, monkeypatch):
    kw = dict(epochs=3, cutmix_alpha=1.0, mixup_alpha=0.2, mix_prob=0.8, aug="medium", ema_decay=0.9,
              deterministic=True, train_per_class=24, bn_recalibration=2)
    straight = fit(config(tiny_data, tmp_path / "straight", **kw))

    real_epoch = loop_module.train_one_epoch

    def interrupted(state, model, loader, loss_fn):
        if state.epoch == 1:
            loader = _Interrupting(loader, after=2)
        return real_epoch(state, model, loader, loss_fn)

    monkeypatch.setattr(loop_module, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(config(tiny_data, tmp_path / "resumed", **kw))
    monkeypatch.setattr(loop_module, "train_one_epoch", real_epoch)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    resumed = fit(config(tiny_data, tmp_path / "resumed", resume=True, **kw))

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema_a = load_checkpoint(tmp_path / "straight" / "last.pt")["ema"]
    ema_b = load_checkpoint(tmp_path / "resumed" / "last.pt")["ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]
    with open(tmp_path / "resumed" / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_call = loop_module.BatchMixer.__call__

    def poisoned(self, images, targets):
        calls["n"] += 1
        if calls["n"] == 8:  # epoch 2 (6 steps per epoch at 24 images per class)
            images = images * float("nan")
        return real_call(self, images, targets)

    monkeypatch.setattr(loop_module.BatchMixer, "__call__", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at epoch 2.*last\.pt"):
        fit(config(tiny_data, tmp_path, train_per_class=24))
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and state["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_corrupt_images_are_skipped_and_counted(tiny_data, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "train" / "frog" / "broken.jpg").write_bytes(b"not an image at all")
    good = (data / "train" / "ship" / "0000.jpg").read_bytes()
    (data / "train" / "ship" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    loader = train_loader(data, 32, batch_size=20, workers=0)
    seen, skipped = 0, []
    with caplog.at_level(logging.WARNING, logger="carve.train"):
        for images, targets, bad in loader:
            seen += len(targets)
            skipped += bad
    assert sorted(p.rsplit("/", 1)[-1] for p in skipped) == ["broken.jpg", "truncated.jpg"]
    assert seen == 180 - 2  # 194 images, drop_last keeps 9 batches of 20
    result = fit(config(data, tmp_path / "run", epochs=1, batch_size=194 // 2, cutmix_alpha=0.0))
    assert result.skipped_images == 2
    assert "broken.jpg" in caplog.text and "truncated.jpg" in caplog.text


def test_cli_train_and_eval(tiny_data, tmp_path, capsys):
    from carve.cli import main

    spec = create_model(TINY_SPEC).spec.save(tmp_path / "tiny.json")
    out = tmp_path / "cli"
    assert main(["train", str(spec), "--data", str(tiny_data), "--out-dir", str(out), "--epochs", "1",
                 "--batch-size", "32", "--workers", "0", "--progress", "false", "--tensorboard", "false",
                 "--train-per-class", "16"]) == 0
    assert "best top-1" in capsys.readouterr().out
    assert main(["eval", str(out / "best.safetensors"), "--data", str(tiny_data), "--workers", "0", "--json"]) == 0
    assert '"n": 64' in capsys.readouterr().out
    assert main(["train", str(spec), "--data", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "new")]) == 2
    assert "nowhere" in capsys.readouterr().err
