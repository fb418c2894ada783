"""What every pipeline step shares: the data it measures on, how a row is measured (parameters, MACs,
size, top-1) and timed (in the pipeline's runtime, an INT8 graph in its own), and the KD finetune
that pruning and quantization-aware training use."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from carve.latency.protocol import PROTOCOLS
from carve.zoo import ArchSpec, count_params, save_weights

from .artefacts import state_size
from .openvino_int8 import OvModel
from .pruning import conv_macs
from .quantization import Int8Model
from .report import StepRow
from .step_export import QUANTIZED
from .step_timing import TimedModel, Timing, time_together


def data_root(data: Any, what: str) -> Any:
    """``data`` as a ``Path`` when it names a folder (which must exist), else as given (an iterable or None)."""
    if data is None or not isinstance(data, (str, Path)):
        return data
    if not Path(data).is_dir():
        raise FileNotFoundError(f"{what}: data folder not found: {data} (expected an image folder with "
                                f"train/ and test/ or val/, e.g. ../shared/data/cifar10)")
    return Path(data)


def eval_batches(data: Any, split: tuple[str, ...], img_size: int, per_class: int, batch_size: int = 100) -> Any:
    """An evaluation loader over a folder's ``split``; anything else is returned as given."""
    if data is None or not isinstance(data, Path):
        return data
    from carve.train import eval_loader

    return eval_loader(data, img_size, batch_size, per_class=per_class, workers=0, split=split)


def graph_bytes(model: nn.Module) -> int:
    """Bytes of the tensors a quantized graph actually reads (its ``get_attr`` nodes), else of its state."""
    graph = getattr(getattr(model, "converted", model), "graph", None)
    if graph is None:
        return state_size(model)
    root, seen, total = getattr(model, "converted", model), set(), 0
    for node in graph.nodes:
        if node.op != "get_attr":
            continue
        obj = root
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        if isinstance(obj, torch.Tensor) and id(obj) not in seen:
            seen.add(id(obj))
            total += obj.numel() * obj.element_size()
    return total


class Epochs:
    """A training loader as (images, labels) batches; each pass over it is a new epoch's order."""

    def __init__(self, loader: Any):
        self.loader, self.epoch = loader, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        from carve.train import set_epoch

        set_epoch(self.loader, self.epoch)
        self.epoch += 1
        for batch in self.loader:
            yield batch[0], batch[1]


class StepRunner:
    """Measures rows; holds the data, the latency settings and the output folder of one pipeline."""

    def __init__(self, out_dir: Path, calib: Any, evald: Any, train_root: Path | None, img_size: int,
                 input_size: int, runtime: str, threads: int | None, latency: bool, protocol: str = "full"):
        self.out_dir, self.calib, self.eval, self.train_root = out_dir, calib, evald, train_root
        self.img_size, self.input_size, self.runtime = img_size, input_size, runtime
        self.threads, self.latency, self.protocol = threads, latency, protocol
        self.model_name, self.in_channels = "model", 3  # set from the model once loaded
        self._exports: tempfile.TemporaryDirectory | None = None  # exports reused across timing calls

    def close(self) -> None:
        """Remove the exports kept for timing (they also go when the runner is collected)."""
        if self._exports is not None:
            self._exports.cleanup()
            self._exports = None

    def row(self, name: str, model: nn.Module, spec: ArchSpec | None, prev: StepRow | None, size: int | None = None,
            notes: dict | None = None, top1: float | None = None) -> StepRow:
        """Everything but latency, which the pipeline measures for all rows together at the end;
        ``top1`` when already measured on this model (a step that left it as it was)."""
        plain = not isinstance(model, QUANTIZED)
        params = count_params(model) if plain else (prev.params if prev else 0)
        macs = conv_macs(model, self.input_size, self.in_channels) if plain else (prev.macs if prev else 0)
        size = size if size is not None else (state_size(model) if plain else graph_bytes(model))
        rt = self.timed(model).runtime
        if not plain:
            rt = "int8-" + ("torch-inductor" if isinstance(model, Int8Model)
                            else "openvino" if isinstance(model, OvModel) else "onnxruntime")
        if top1 is None and self.eval is not None:
            from carve.train import evaluate

            top1 = float(evaluate(model, self.eval, img_size=self.img_size, device="cpu")["top1"])
        return StepRow(name=name, spec_name=spec.name if spec is not None else self.model_name, params=params,
                       macs=macs, size_bytes=size, latency_ms=None, latency_p10_ms=None, latency_p90_ms=None,
                       runtime=rt, top1=top1, notes=notes or {})

    def timed(self, model: nn.Module) -> TimedModel:
        """A plain model runs in the pipeline's runtime's engine; an INT8 graph in the runtime it was built for."""
        plain = not isinstance(model, QUANTIZED)
        return TimedModel(model, self.runtime if (self.runtime in ("onnxruntime", "openvino") and plain) else "eager")

    def time(self, models: Sequence[nn.Module]) -> list[Timing]:
        """``models`` timed together, interleaved, at the pipeline's input size; a model timed again
        reuses its export."""
        if self._exports is None:
            self._exports = tempfile.TemporaryDirectory(prefix="carve-timing-")
        return time_together([self.timed(m) for m in models], self.input_size, self.in_channels, self.threads,
                             onnx_dir=Path(self._exports.name), protocol=PROTOCOLS[self.protocol])

    def qat_data(self, finetune: dict) -> Epochs:
        """Shuffled (images, labels) batches of the training split, reshuffled each pass."""
        if self.train_root is None:
            raise ValueError("qat_epochs: quantization-aware training needs a training image folder (train= or "
                             "--eval DATA with a train/ split)")
        from carve.train import train_loader

        return Epochs(train_loader(self.train_root, self.img_size, int(finetune.get("batch_size", 32)),
                                   aug=str(finetune.get("aug", "weak")),
                                   per_class=int(finetune.get("train_per_class", 0)), workers=0))

    def finetune(self, model: nn.Module, teacher: nn.Module, epochs: int, tag: str, **kw: Any) -> nn.Module:
        """``model`` finetuned for ``epochs`` on the training split with ``teacher`` as KD teacher."""
        if self.train_root is None:
            raise ValueError("finetune_epochs: finetuning needs a training image folder (train= or --eval DATA "
                             "with a train/ split)")
        from carve.train import TrainConfig, fit

        student = save_weights(model, self.out_dir / f"{tag}_student.safetensors")
        teacher_path = save_weights(teacher, self.out_dir / "teacher.safetensors")
        cfg = TrainConfig(model=str(student), data=str(self.train_root), out_dir=str(self.out_dir / f"{tag}_finetune"),
                          epochs=epochs, teacher=str(teacher_path), img_size=self.img_size, overwrite=True,
                          **{"lr": 0.02, "warmup_epochs": 0.0, "cutmix_alpha": 0.0, "workers": 0, "progress": True,
                             "tensorboard": False, **kw})
        return fit(cfg).model.cpu().eval().to(memory_format=torch.contiguous_format)  # as the other steps leave it


__all__ = ["Epochs", "StepRunner", "data_root", "eval_batches", "graph_bytes"]
