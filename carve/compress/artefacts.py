"""Export: ONNX verified against PyTorch with ONNX Runtime, ``torch.export`` programs, file sizes."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from carve.latency.onnx_export import export_onnx, onnx_session


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX Runtime vs PyTorch on the same images."""

    path: str
    size_bytes: int
    max_abs_diff: float
    top1_agreement: float
    images: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_size(path: str | Path) -> int:
    """Bytes on disk of a file (with its external-data sidecar, if any) or of a directory's files."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    extra = path.with_name(path.name + ".data")
    return path.stat().st_size + (extra.stat().st_size if extra.exists() else 0)


def state_size(model: nn.Module) -> int:
    """Bytes of a module's parameters and buffers as stored (what a weights file holds)."""
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def _inputs(images: Iterable | torch.Tensor | None, size: int, cin: int) -> torch.Tensor:
    if images is None:
        return torch.randn(8, cin, size, size, generator=torch.Generator().manual_seed(0))
    if isinstance(images, torch.Tensor):
        return images
    xs = []
    for batch in images:
        xs.append(batch[0] if isinstance(batch, (tuple, list)) else batch)
        if sum(len(x) for x in xs) >= 64:
            break
    return torch.cat(xs)[:64]


@torch.no_grad()
def verify_onnx(model: nn.Module, path: str | Path, images: Iterable | torch.Tensor | None = None,
                input_size: int = 224, threads: int | None = None) -> OnnxCheck:
    """Run ``path`` in ONNX Runtime and ``model`` in PyTorch on the same images; compare outputs."""
    session = onnx_session(path, threads)
    meta = session.get_inputs()[0]
    cin = meta.shape[1] if isinstance(meta.shape[1], int) else 3
    x = _inputs(images, input_size, cin)
    model.eval()
    ref = model(x)
    got = torch.cat([torch.from_numpy(session.run(None, {meta.name: xi.numpy()})[0]) for xi in x.split(1)])
    return OnnxCheck(path=str(path), size_bytes=file_size(path), max_abs_diff=float((got - ref).abs().max()),
                     top1_agreement=float((got.argmax(1) == ref.argmax(1)).float().mean()), images=len(x))


def to_onnx(model: nn.Module, path: str | Path, images: Iterable | torch.Tensor | None = None,
            input_size: int = 224) -> OnnxCheck:
    """Export ``model`` to ONNX (batch 1, ``input_size`` px) and verify it against PyTorch on ``images``;
    when those are of another size (evaluated at the training size, deployed at another), the file
    leaves height and width free so that both run."""
    cin = getattr(getattr(model, "spec", None), "in_channels", 3)
    dynamic = False
    if images is not None:
        x = _inputs(images, input_size, cin)
        dynamic, cin, images = x.shape[-1] != input_size, x.shape[1], x
    path = export_onnx(model.eval(), path, input_size=input_size, in_channels=cin, dynamic_size=dynamic)
    return verify_onnx(model, path, images, input_size)


def to_program(model: nn.Module, path: str | Path, input_size: int = 224, in_channels: int = 3) -> Path:
    """Save a ``torch.export`` program (.pt2, batch 1); load with ``torch.export.load(path).module()``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, in_channels, input_size, input_size)
    ep = torch.export.export(model.eval(), (example,))
    tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.pt2")
    torch.export.save(ep, str(tmp))
    os.replace(tmp, path)
    return path
