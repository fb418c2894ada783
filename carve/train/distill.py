"""Knowledge distillation: Hinton's loss and loading a teacher from the zoo or a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2, batch mean."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t


def load_teacher(teacher: Any, num_classes: int, small_input: int = 0, pretrained: bool | str = True) -> nn.Module:
    """A frozen eval-mode teacher: a carve weights/checkpoint file (its spec included), an
    ``nn.Module``, or a zoo name (with ``pretrained`` weights and ``small_input`` like the student)."""
    from carve.zoo import create_model

    if isinstance(teacher, nn.Module):
        model = teacher
    elif Path(str(teacher)).suffix in (".safetensors", ".pt", ".pth", ".bin"):
        if not Path(str(teacher)).is_file():
            raise FileNotFoundError(f"teacher: file not found: {teacher}")
        model = create_model(str(teacher))
    else:
        model = create_model(teacher, pretrained=pretrained, num_classes=num_classes, small_input=small_input)
    head = getattr(getattr(model, "spec", None), "head", None)
    if head is not None and head.num_classes != num_classes:
        raise ValueError(f"teacher: predicts {head.num_classes} classes, the data has {num_classes}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class DistillLoss(nn.Module):
    """``(1 - alpha) * label_loss + alpha * kd_loss(student, teacher, T)``."""

    def __init__(self, label_loss: nn.Module, alpha: float, temperature: float):
        super().__init__()
        self.label_loss, self.alpha, self.temperature = label_loss, alpha, temperature

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return ((1 - self.alpha) * self.label_loss(logits, targets)
                + self.alpha * kd_loss(logits, teacher_logits, self.temperature))
