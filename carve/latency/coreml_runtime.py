"""Core ML: an ML Program package (``.mlpackage``) converted from a model with coremltools, and what
can be read back from it where Core ML itself cannot run.

A package is a folder holding a protobuf program (``model.mlmodel``) and a weights blob; loading it
runs no Python code. Core ML predicts only on macOS: elsewhere ``prediction_unavailable`` says why,
and ``read_mlpackage`` loads the program (MIL) with its weights so its inputs, outputs, operations
and every convolution/linear weight can be checked against the PyTorch model.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from carve.zoo.mobileone import deployed

INPUT_NAME, OUTPUT_NAME = "input", "logits"
DEPLOYMENT_TARGET = "iOS16"  # ML Program with FP32 or FP16 weights
PALETTE_TARGET = "iOS18"  # lookup tables per group of output channels (constexpr_lut_to_dense, iOS18 form)
WEIGHT_OPS = ("conv", "linear")


def _coremltools() -> Any:
    try:
        import coremltools
    except ImportError as exc:
        raise RuntimeError("Core ML export needs the coremltools package (pip install coremltools)") from exc
    return coremltools


def coreml_version() -> str:
    """The installed coremltools version, or "absent"."""
    try:
        return version("coremltools")
    except PackageNotFoundError:
        return "absent"


def is_palettized(model: nn.Module) -> bool:
    """True when some layer of ``model`` carries coremltools palettisation metadata (a lookup table)."""
    return any(name.endswith("_COREML_/weight/lut") for name, _ in model.named_buffers())


def export_mlpackage(model: nn.Module, path: str | Path, input_size: int = 224, batch: int = 1,
                     in_channels: int | None = None, fp16: bool = False) -> Path:
    """``model`` (eval, MobileOne deployed) as a Core ML ML Program for a fixed ``batch x C x size x size``
    input named "input" and output "logits", captured with ``torch.export`` and written atomically.
    Layers palettised by ``carve.compress.clustering`` are stored as lookup tables and indices."""
    ct = _coremltools()
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise ValueError(f"{path}: a Core ML ML Program is written as a .mlpackage folder")
    model = deployed(model).eval()
    cin = in_channels or getattr(getattr(model, "spec", None), "in_channels", 3)
    x = torch.zeros(batch, cin, input_size, input_size)
    with torch.no_grad():
        program = torch.export.export(model, (x,)).run_decompositions({})
    target = PALETTE_TARGET if is_palettized(model) else DEPLOYMENT_TARGET
    mlmodel = ct.convert(program, inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(x.shape))],
                         outputs=[ct.TensorType(name=OUTPUT_NAME)], convert_to="mlprogram",
                         minimum_deployment_target=getattr(ct.target, target),
                         compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
                         skip_model_load=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mlpackage")  # coremltools saves only to .mlpackage
    shutil.rmtree(tmp, ignore_errors=True)
    mlmodel.save(str(tmp))
    _replace_dir(tmp, path)
    return path


def _replace_dir(src: Path, dst: Path) -> None:
    """Put folder ``src`` at ``dst``; an existing ``dst`` is swapped out first and removed after."""
    old = dst.with_name(f".{dst.name}.{os.getpid()}.old")
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def prediction_unavailable() -> str | None:
    """None where Core ML can predict (macOS with coremltools' native module); otherwise why not, with
    the evidence (the OS, and the error importing coremltools' native predictor)."""
    try:
        import coremltools.libcoremlpython  # noqa: F401
        native = None
    except ImportError as exc:
        native = f"importing its native predictor fails: {exc}"
    if platform.system() != "Darwin":
        return (f"Core ML predicts only on macOS; this is {platform.system()} {platform.machine()}, where "
                f"coremltools {coreml_version()} converts and reads packages but "
                f"{native or 'cannot load a model'}")
    return None if native is None else f"coremltools {coreml_version()}: {native}"


def coreml_predictor(path: str | Path, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy-in, numpy-out call of the package at ``path`` on the CPU (macOS only); ``threads`` is
    accepted for symmetry, Core ML picks its own."""
    reason = prediction_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    ct = _coremltools()
    mlmodel = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    return lambda x: np.asarray(mlmodel.predict({INPUT_NAME: x})[OUTPUT_NAME])


@dataclass
class PackageWeight:
    """One convolution or linear weight of a package, dense (lookup tables expanded)."""

    op: str
    name: str
    shape: tuple[int, ...]
    values: np.ndarray
    palette: tuple[int, ...] | None = None  # lookup-table shape when palettised, else None

    @property
    def palette_size(self) -> int | None:
        """Entries of each lookup table (2 ** bits), or None for a plain weight."""
        return None if self.palette is None else self.palette[-2]


@dataclass
class PackageSummary:
    """What a package holds: its interface, operations and convolution/linear weights."""

    path: Path
    spec_version: int
    inputs: dict[str, tuple[int, ...]]
    outputs: dict[str, tuple[int, ...]]
    ops: dict[str, int]
    weights: list[PackageWeight] = field(default_factory=list)
    package_bytes: int = 0
    weight_file_bytes: int = 0

    @property
    def weight_elements(self) -> int:
        return sum(int(np.prod(w.shape)) for w in self.weights)

    def to_dict(self) -> dict[str, Any]:
        return dict(path=str(self.path), spec_version=self.spec_version,
                    inputs={k: list(v) for k, v in self.inputs.items()},
                    outputs={k: list(v) for k, v in self.outputs.items()}, ops=dict(self.ops),
                    weight_tensors=len(self.weights), weight_elements=self.weight_elements,
                    palettised_tensors=sum(w.palette is not None for w in self.weights),
                    package_bytes=self.package_bytes, weight_file_bytes=self.weight_file_bytes)


def folder_bytes(path: str | Path) -> int:
    """Total size of the files under ``path`` (a file's own size for a file)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def read_mlpackage(path: str | Path) -> PackageSummary:
    """Load the ML Program in ``path`` without Core ML (spec and weights blob only) and summarise it."""
    ct = _coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load

    path = Path(path)
    if not (path / "Manifest.json").is_file():
        raise ValueError(f"{path}: not a Core ML package (no Manifest.json)")
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{path}: expected an ML Program, got a {spec.WhichOneof('Type')} model")
    weights_dir = path / "Data" / "com.apple.CoreML" / "weights"
    main = load(spec, spec.specificationVersion, file_weights_dir=str(weights_dir)).functions["main"]
    ops = Counter(op.op_type for op in main.operations if op.op_type != "const")
    weights = []
    for op in main.operations:
        if op.op_type not in WEIGHT_OPS:
            continue
        source = op.weight.op
        if source.op_type.startswith("constexpr_lut_to_dense"):
            dense, palette = source.materialized_val_inference(), tuple(source.lut.shape)
        else:
            dense, palette = op.weight.val, None
        weights.append(PackageWeight(op.op_type, op.weight.name, tuple(op.weight.shape),
                                     np.asarray(dense, dtype=np.float32), palette))
    return PackageSummary(path=path, spec_version=int(spec.specificationVersion),
                          inputs={k: tuple(int(d) for d in v.shape) for k, v in main.inputs.items()},
                          outputs={o.name: tuple(int(d) for d in o.shape) for o in main.outputs},
                          ops=dict(sorted(ops.items())), weights=weights, package_bytes=folder_bytes(path),
                          weight_file_bytes=folder_bytes(weights_dir) if weights_dir.is_dir() else 0)
