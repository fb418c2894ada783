"""``export_model``: a model, spec or weights file shipped as an ONNX file, OpenVINO IR, ExecuTorch
program, LiteRT model (FP32 or INT8 through the runtime's own flow) or Core ML package (FP32, FP16 or palettised),
with a parity report against PyTorch and its latency here.

Core ML predicts only on macOS: elsewhere the report says so (with the evidence) and checks the
package by reading it back instead (``check_mlpackage``: interface, operations, weights by value)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from carve.config import Config, ConfigError, setting
from carve.latency.artefact import open_artefact
from carve.latency.artefact_latency import file_digest, measure_artefact
from carve.latency.onnx_export import export_onnx
from carve.latency.openvino_runtime import convert_to_ir
from carve.latency.parity import check_parity, image_batches
from carve.latency.protocol import PROTOCOLS
from carve.latency.qdq import check_patterns, kept_modules
from carve.zoo import create_model
from carve.zoo.shipped import trained_input_size

from .clustering import CLUSTER_BITS
from .openvino_int8 import nncf_int8

EXPORT_TARGETS = ("onnx", "openvino", "executorch", "litert", "coreml")
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "executorch": ".pte", "litert": ".tflite", "coreml": ".mlpackage"}
RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino", "executorch": "executorch", "litert": "litert",
           "coreml": "coreml"}
BATCH_ONE = {"executorch": "ExecuTorch", "litert": "LiteRT", "coreml": "Core ML"}  # formats written for batch 1


@dataclass
class ExportConfig(Config):
    """What to ship (``model``), in which format, at which precision and input shape, and the real
    images the parity check (and INT8 calibration) use."""

    model: str | None = setting(None, help="carve weights file, spec file (.json/.yaml) or zoo name")
    to: str = setting("onnx", choices=EXPORT_TARGETS, help="artefact format: ONNX (ONNX Runtime), OpenVINO IR, "
                                                         "ExecuTorch program (XNNPACK), LiteRT model (XNNPACK) or "
                                                         "Core ML ML Program")
    out: str | None = setting(None, help="artefact path (default: exports/NAME[_int8].onnx, .xml, .pte, "
                                         ".tflite or .mlpackage); the parity report goes beside it as NAME.report.json")
    int8: bool = setting(False, help="INT8 through the runtime's own flow (ONNX: ORT static QDQ; OpenVINO: NNCF; "
                                     "ExecuTorch: PT2E XNNPACK quantizer; LiteRT: litert-torch's PT2E quantizer)")
    calib: str | None = setting(None, help="image folder for INT8 calibration (train/ split); for a detect "
                                           "checkpoint, a detection dataset")
    calib_per_class: int = setting(10, ">= 1", help="calibration images per class")
    keep_float: list[str] = setting(default_factory=list, help="with --int8: glob patterns over module names kept "
                                                               "in FP32 (e.g. '*.se' for the SE gates, "
                                                               "'classifier')")
    dynamic_batch: bool = setting(False, help="leave the batch axis free (default: fixed at 1)")
    fp16: bool = setting(False, help="Core ML: FP16 weights and compute (default: FP32)")
    cluster_bits: int | None = setting(None, choices=CLUSTER_BITS, help="Core ML: palettise each convolution/"
                                                                        "linear weight to 2^N values (k-means), "
                                                                        "stored as indices plus lookup tables")
    cluster_group_size: int = setting(0, ">= 0", help="with --cluster-bits: one palette per this many output "
                                                      "channels (0: one per tensor)")
    size: int = setting(224, ">= 8", help="input size in px the artefact is exported (and timed) at")
    data: str | None = setting("../shared/data/cifar10", help="image folder whose val/ or test/ images check "
                                                              "parity (resized to --size)")
    parity_images: int = setting(200, ">= 1", help="real images the parity check compares")
    num_classes: int | None = setting(None, ">= 1", help="for zoo names: classifier width")
    small_input: int = setting(0, ">= 0", help="for zoo names: early strides removed")
    threads: int = setting(1, ">= 1", help="runtime threads for the parity check and the latency")
    latency: bool = setting(True, help="time the artefact here with the latency engine")
    protocol: str = setting("quick", choices=tuple(PROTOCOLS), help="latency protocol")

    def check(self) -> None:
        if not self.model:
            raise ConfigError("model", "expected a zoo name, spec file or weights file")
        if self.to == "coreml" and self.int8:
            raise ConfigError("int8", "Core ML calibrates activations by running the model, which needs macOS; "
                                      "shrink a Core ML package with --cluster-bits N (palettisation) or --fp16")
        if self.keep_float and not self.int8:
            raise ConfigError("keep_float", "keeps modules in FP32 within an INT8 export: add --int8")
        if self.int8 and not self.calib:
            raise ConfigError("calib", "--int8 needs calibration images (--calib DATA, an image folder)")
        if self.to != "coreml":
            for name in ("fp16", "cluster_bits"):
                if getattr(self, name):
                    raise ConfigError(name, f"applies to --to coreml only (got --to {self.to})")
        if self.cluster_group_size and self.cluster_bits is None:
            raise ConfigError("cluster_group_size", "applies with --cluster-bits only")


def default_out(cfg: ExportConfig, name: str) -> Path:
    tag = "_int8" if cfg.int8 else f"_{cfg.cluster_bits}bit" if cfg.cluster_bits else "_fp16" if cfg.fp16 else ""
    return Path("exports") / f"{name}{tag}{SUFFIX[cfg.to]}"


def _load(cfg: ExportConfig) -> nn.Module:
    text = str(cfg.model)
    if Path(text).suffix in (".safetensors", ".json", ".yaml", ".yml"):
        if not Path(text).is_file():
            raise FileNotFoundError(f"model: file not found: {text}")
        return create_model(text).eval()
    return create_model(text, num_classes=cfg.num_classes, small_input=cfg.small_input).eval()


def _images(root: str, split: tuple[str, ...], size: int, per_class: int, limit: int) -> list[torch.Tensor]:
    from carve.train import eval_loader

    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: image folder not found (expected train/ and val/ or test/ folders, "
                                f"e.g. ../shared/data/cifar10)")
    return image_batches(eval_loader(root, size, 50, per_class=per_class, workers=0, split=split), limit)


def _onnx_int8(model: nn.Module, calib: list[torch.Tensor], work: Path, dynamic_batch: bool,
               keep_float: Sequence[str]) -> Path:
    from .quantization import quantize_ort

    quantize_ort(model, calib=[torch.cat(calib)], out_dir=work, calib_images=len(calib), threads=1,
                 dynamic_batch=dynamic_batch, keep_float=keep_float)
    return work / "model_int8.onnx"


def _openvino_ir(fp32: Path, xml: Path, calib: list[torch.Tensor] | None, keep_float: Sequence[str] = ()) -> None:
    """IR from the FP32 ONNX file; INT8 through NNCF post-training quantization when ``calib`` is given,
    but for the operations of the modules matching ``keep_float``."""
    if calib is not None:
        nncf_int8(fp32, xml, calib, keep_float)
    else:
        convert_to_ir(fp32, xml)


def _place(src: Path, out: Path) -> None:
    """Move ``src`` (and an IR's .bin) to ``out`` atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    pairs = [(src, out)] + ([(src.with_suffix(".bin"), out.with_suffix(".bin"))] if src.suffix == ".xml" else [])
    for a, b in reversed(pairs):  # the .bin first: an .xml is never there without its weights
        tmp = b.with_name(f".{b.name}.{os.getpid()}.tmp")
        shutil.copyfile(a, tmp)
        os.replace(tmp, b)


def export_model(cfg: ExportConfig) -> dict[str, Any]:
    """Write the artefact ``cfg`` asks for and its report (JSON beside it); returns the report."""
    cfg.check()
    model = _load(cfg)
    name = getattr(getattr(model, "spec", None), "name", None) or Path(str(cfg.model)).stem
    out = Path(cfg.out) if cfg.out else default_out(cfg, name)
    if out.suffix != SUFFIX[cfg.to]:
        raise ValueError(f"out: {out}: a --to {cfg.to} artefact is written as a {SUFFIX[cfg.to]} file")
    cin = getattr(getattr(model, "spec", None), "in_channels", 3)
    names = [n for n, _ in model.named_modules() if n]
    kept = kept_modules(names, check_patterns(cfg.keep_float, names))
    if cfg.to in BATCH_ONE and cfg.dynamic_batch:
        raise ValueError(f"dynamic_batch: the {BATCH_ONE[cfg.to]} export is written for batch 1 here")
    if cfg.to == "coreml":
        return _coreml(cfg, model, name, out, cin)
    calib = _images(cfg.calib, ("train",), cfg.size, cfg.calib_per_class, 10 ** 6) if cfg.int8 else None
    with tempfile.TemporaryDirectory(prefix="carve_export_") as tmp:
        work = Path(tmp)
        if cfg.to == "executorch":
            from carve.latency.executorch_runtime import export_pte

            _place(export_pte(model, work / "model.pte", cfg.size, 1, cin, calib, cfg.keep_float), out)
            return _report(cfg, model, name, out, calib, kept)
        if cfg.to == "litert":
            from carve.latency.litert_runtime import export_tflite

            _place(export_tflite(model, work / "model.tflite", cfg.size, 1, cin, calib, cfg.keep_float), out)
            return _report(cfg, model, name, out, calib, kept)
        fp32 = export_onnx(model, work / "model_fp32.onnx", input_size=cfg.size, in_channels=cin,
                           dynamic_batch=cfg.dynamic_batch)
        if cfg.to == "onnx":
            built = (_onnx_int8(model, calib, work, cfg.dynamic_batch, cfg.keep_float) if calib is not None
                     else fp32)
        else:
            built = work / "model.xml"
            _openvino_ir(fp32, built, calib, cfg.keep_float)
        _place(built, out)
    return _report(cfg, model, name, out, calib, kept)


def _report(cfg: ExportConfig, model: nn.Module, name: str, out: Path, calib: list[torch.Tensor] | None,
            kept: list[str]) -> dict[str, Any]:
    """Parity with PyTorch and latency here of the artefact at ``out``, written beside it."""
    runtime = RUNTIME[cfg.to]
    report: dict[str, Any] = dict(model=str(cfg.model), name=name, to=cfg.to, runtime=runtime, artefact=str(out),
                                  files=[str(out)] + ([str(out.with_suffix(".bin"))] if cfg.to == "openvino" else []),
                                  size_bytes=sum(Path(f).stat().st_size for f in [out] +
                                                 ([out.with_suffix(".bin")] if cfg.to == "openvino" else [])),
                                  sha256=file_digest(out), precision="int8" if cfg.int8 else "fp32",
                                  calib_images=len(calib) if calib else 0, input_size=cfg.size,
                                  dynamic_batch=cfg.dynamic_batch)
    if cfg.keep_float:
        report.update(keep_float=list(cfg.keep_float), kept_float_modules=kept)
    art = open_artefact(out, runtime, cfg.threads)
    report["input_shape"] = list(art.input_shape)
    if cfg.data:
        images = _images(cfg.data, ("val", "test"), cfg.size, 0, cfg.parity_images)
        report["parity"] = dict(check_parity(model, art.run, [torch.cat(images)], cfg.parity_images).to_dict(),
                                data=str(cfg.data), reference="PyTorch FP32, eval mode")
        trained = trained_input_size(str(cfg.model))
        if trained and trained != cfg.size:
            report["parity"]["note"] = (
                f"{cfg.model} was trained at {trained} px; at {cfg.size} px it sees inputs it was not trained on, "
                f"where its top-1 agreement can read low for that reason alone: check parity with --size {trained} "
                f"(the artefact's speed at {cfg.size} px is what it is)")
    if cfg.latency:
        r = measure_artefact(out, runtime, cfg.threads, 1, cfg.size, PROTOCOLS[cfg.protocol])
        report["latency"] = dict(median_ms=r.median_ms, p10_ms=r.p10_ms, p90_ms=r.p90_ms, runs=r.runs,
                                 threads=cfg.threads, batch=1, protocol=cfg.protocol)
        report["fingerprint"] = r.fingerprint
    report_path = out.with_name(out.stem + ".report.json")
    report_path.write_text(json.dumps(report, indent=2, sort_keys=True))
    report["report"] = str(report_path)
    return report


def _coreml(cfg: ExportConfig, model: nn.Module, name: str, out: Path, cin: int) -> dict[str, Any]:
    """Write the Core ML package (palettised with ``cluster_bits``), check it read back against the
    model, and add parity where Core ML predicts; the report goes beside it."""
    from carve.files import write_json
    from carve.latency.coreml_runtime import (coreml_predictor, coreml_version, export_mlpackage,
                                              prediction_unavailable)

    from .clustering import cluster, clustered_size
    from .coreml_check import check_mlpackage

    images = _images(cfg.data, ("val", "test"), cfg.size, 0, cfg.parity_images) if cfg.data else None
    report: dict[str, Any] = dict(model=str(cfg.model), name=name, to="coreml", runtime="coreml",
                                  artefact=str(out), files=[str(out)], input_size=cfg.size, dynamic_batch=False,
                                  precision="fp16" if cfg.fp16 else "fp32", calib_images=0,
                                  coremltools=coreml_version())
    shipped = model
    if cfg.cluster_bits:
        shipped, _ = cluster(model, bits=cfg.cluster_bits, group_size=cfg.cluster_group_size)
        report["precision"] += f", palettised {cfg.cluster_bits}-bit"
        report["clustering"] = dict(bits=cfg.cluster_bits, group_size=cfg.cluster_group_size,
                                    layers=len(shipped.cluster_layers), skipped=list(shipped.cluster_skipped),
                                    **clustered_size(shipped).to_dict())
        if images:
            def run(x: Any) -> Any:  # check_parity calls it under inference mode
                return shipped(torch.from_numpy(x)).numpy()
            report["clustering"]["vs_fp32"] = dict(
                check_parity(model, run, [torch.cat(images)], cfg.parity_images).to_dict(),
                reference="PyTorch FP32 (unclustered), the clustered model run in PyTorch")
    export_mlpackage(shipped, out, cfg.size, 1, cin, fp16=cfg.fp16)
    check = check_mlpackage(shipped, out, cfg.size, cin, tolerance=2e-3 if cfg.fp16 else 1e-4)
    report.update(size_bytes=check.package_bytes, sha256=file_digest(out), input_shape=check.input_shape,
                  package_check=check.to_dict())
    unavailable = prediction_unavailable()
    if unavailable is None and images:
        report["parity"] = dict(check_parity(shipped, coreml_predictor(out, cfg.threads), [torch.cat(images)],
                                             cfg.parity_images).to_dict(), data=str(cfg.data),
                                reference="PyTorch, eval mode" + (" (clustered)" if cfg.cluster_bits else ""))
    elif unavailable is not None:
        report["parity_skipped"] = (f"{unavailable}. Checked instead by reading the package back: input and output "
                                    f"names and shapes, operations, and every convolution/linear weight against "
                                    f"the (folded) PyTorch model's (package_check)")
    report["latency_skipped"] = unavailable or "Core ML is not one of carve's latency engines yet"
    report_path = out.with_name(out.stem + ".report.json")
    write_json(report_path, report)
    report["report"] = str(report_path)
    return report
