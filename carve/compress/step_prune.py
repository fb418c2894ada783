"""The pipeline's prune step: a carve model pruned to a new spec (in rounds, each optionally finetuned
with the unpruned model as KD teacher), or a module without a spec pruned over its traced graph; the
result is saved before the row is measured, so a killed run keeps it."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from carve.zoo import ArchSpec, save_weights

from .folding import fold, fold_any
from .graph_pruning import prune_graph, save_graph_pruned
from .pruning import prune
from .step_runner import StepRunner


class Pruned(NamedTuple):
    trainable: nn.Module  # unfolded, what a later step prunes or finetunes
    model: nn.Module  # folded again where folding came first
    spec: ArchSpec | None
    notes: dict[str, Any]
    label: str


def prune_step(trainable: nn.Module, spec: ArchSpec | None, folded: bool, kw: dict[str, Any], runner: StepRunner,
               finetune_epochs: int, finetune: dict | None) -> Pruned:
    """Prune ``trainable`` as ``kw`` asks (``ratio``, ``target_macs``, ``iterations``, ``finetune_epochs``, and
    the pruner's own arguments); files go to the runner's output folder."""
    kw = dict(kw)
    iters = int(kw.pop("iterations", 1))
    epochs = int(kw.pop("finetune_epochs", finetune_epochs))
    ratio = kw.pop("ratio", None)
    out = runner.out_dir
    teacher = trainable
    notes: dict[str, Any] = {}
    if spec is None:  # a user's module: pruned over its traced graph, saved with its layer shapes
        trainable, kept = _graph_prune(trainable, runner, ratio, iters, epochs, kw)
        save_graph_pruned(trainable, out / "pruned.safetensors")
        notes.update(graph=True, kept_whole=kept, shapes_file=str(out / "pruned.json"))
        model = fold_any(trainable) if folded else trainable
    else:
        for it in range(iters):
            r = None if ratio is None else 1 - (1 - ratio) ** (1 / iters)
            trainable, spec = prune(trainable, trainable.spec, r, input_size=runner.input_size, data=runner.calib,
                                    **kw)
            if epochs > 0:
                trainable = runner.finetune(trainable, teacher, epochs, f"prune{it}", **(finetune or {}))
                spec = trainable.spec
        model = fold(trainable, spec)[0] if folded else trainable
        save_weights(trainable, out / "pruned.safetensors")
        notes.update(spec_file=str(out / "pruned.json"))
        spec.save(out / "pruned.json")
    notes.update(ratio=ratio, iterations=iters, finetune_epochs=epochs)
    label = "prune"
    if ratio is not None:
        label += f" {ratio:g}"
    elif "target_macs" in kw:
        label += f" to {kw['target_macs']:.0%} MACs"
    if epochs:
        label += f" + finetune {epochs}ep"
    return Pruned(trainable, model, spec, notes, label)


def _graph_prune(model: nn.Module, runner: StepRunner, ratio: float | None, iters: int, epochs: int,
                 kw: dict[str, Any]) -> tuple[nn.Module, list[str]]:
    """A model without a spec pruned over its traced graph in ``iters`` rounds; the layers kept whole."""
    if epochs:
        raise ValueError("finetune_epochs: finetuning after pruning rebuilds the model from a carve spec; a model "
                         "without one is pruned without finetuning (finetune_epochs=0)")
    if "target_latency" in kw:
        raise ValueError("target_latency: a model without a carve spec prunes to ratio or target_macs")
    target = kw.pop("target_macs", None)
    size = runner.input_size
    kept: list[str] = []
    for _ in range(iters):
        res = prune_graph(model, torch.zeros(1, runner.in_channels, size, size), data=runner.calib,
                          ratio=None if ratio is None else 1 - (1 - ratio) ** (1 / iters),
                          target_macs=None if target is None else target ** (1 / iters), **kw)
        model, kept = res.model, res.kept_whole
    return model, kept


__all__ = ["Pruned", "prune_step"]
