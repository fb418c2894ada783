"""Distillation, mixed precision, channels_last, clipping and peer modules inside ``fit``."""

from __future__ import annotations

import math

import pytest
import torch

from carve.train import fit, kd_loss, load_teacher
from carve.train.data import eval_loader
from .test_fit import config


def _mean_kd(student, teacher, data) -> float:
    student.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for images, _, _ in eval_loader(data, 32, 32, workers=0):
            total += kd_loss(student(images), teacher(images), 2.0).item() * len(images)
            n += len(images)
    return total / n


def test_distillation_pulls_student_towards_teacher(tiny_data, tmp_path):
    small = dict(epochs=2, cutmix_alpha=0.0, train_per_class=24, lr=0.1)
    teacher_run = fit(config(tiny_data, tmp_path / "teacher", **small))
    assert load_checkpoint_teacher_ok(teacher_run.last_path)
    teacher = load_teacher(teacher_run.best_path, num_classes=4)
    assert not any(p.requires_grad for p in teacher.parameters())
    kw = dict(teacher=str(teacher_run.best_path), kd_temperature=2.0, seed=1, **small)
    distilled = fit(config(tiny_data, tmp_path / "kd", kd_alpha=1.0, **kw))
    labels_only = fit(config(tiny_data, tmp_path / "labels", kd_alpha=0.0, **kw))
    gap_kd = _mean_kd(distilled.model, teacher, tiny_data)
    gap_labels = _mean_kd(labels_only.model, teacher, tiny_data)
    assert gap_kd < 0.7 * gap_labels, (gap_kd, gap_labels)


def load_checkpoint_teacher_ok(path) -> bool:
    """A training checkpoint (last.pt) also works as a teacher: it carries its spec."""
    return load_teacher(path, num_classes=4).spec.head.num_classes == 4


def test_bf16_channels_last_clip_and_ema_run(tiny_data, tmp_path):
    result = fit(config(tiny_data, tmp_path, epochs=1, amp="bf16", channels_last=True, grad_clip=1.0,
                        ema_decay=0.9, train_per_class=24, aug="strong", mixup_alpha=0.2))
    row = result.history[-1]
    assert math.isfinite(row["train_loss"]) and row["ema_top1"] is not None
    conv = result.model.stem.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_fit_trains_a_peer_module(tiny_data, tmp_path):
    import torchvision

    model = torchvision.models.mobilenet_v3_small(num_classes=4)
    result = fit(config(tiny_data, tmp_path, model=model, epochs=1, train_per_class=16))
    assert result.model is model and result.spec is None
    assert (tmp_path / "final.safetensors").is_file()


def test_channels_last_distils_from_a_channels_last_teacher_with_the_same_losses(tiny_data, tmp_path, monkeypatch):
    from carve.train import loop

    small = dict(epochs=1, cutmix_alpha=0.0, train_per_class=8)
    teacher_run = fit(config(tiny_data, tmp_path / "teacher", **small))
    teachers = []
    real = loop.load_teacher
    monkeypatch.setattr(loop, "load_teacher", lambda *a, **k: teachers.append(real(*a, **k)) or teachers[-1])
    kw = dict(teacher=str(teacher_run.best_path), kd_alpha=0.5, seed=1, **small)
    plain = fit(config(tiny_data, tmp_path / "plain", **kw))
    fast = fit(config(tiny_data, tmp_path / "fast", channels_last=True, **kw))

    def weights(model):
        return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    assert all(w.is_contiguous() for w in weights(teachers[0]))
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights(teachers[1]))
    assert any(not w.is_contiguous() for w in weights(teachers[1]))
    assert fast.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"], rel=1e-3)
