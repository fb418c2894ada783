"""ONNX Runtime QDQ INT8 with parts of the model kept in floating point.

A model is exported to ONNX once; every node is named after the module it comes from (the
dynamo exporter records the module path of each node, the legacy exporter writes it into the
node's name), and the activation ranges are calibrated once (ONNX Runtime's calibration cache).
From then on any variant (everything INT8, some modules kept float, only one module INT8) is a
re-quantization of the same graph with ``nodes_to_exclude``, without calibrating again.

Patterns (``keep_float``) are shell globs (``fnmatch``) over module names, e.g. ``*.se`` or
``blocks.1.*``; a node is kept float when its module or any module above it matches.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from .onnx_export import export_onnx, onnx_session

CALIBRATIONS = ("minmax", "percentile", "entropy")  # ONNX Runtime's ways to set activation ranges
LAYER_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")  # the nodes that carry weights
CALIBRATION_CHUNK = 64  # images whose intermediate outputs calibration holds in memory at once


class ScopeError(ValueError):
    """A keep-float request that names nothing in the model; the message names the pattern."""


def _module_of(node: Any, top_level: str = "") -> str:
    """Module path of an exported node (``top_level`` for the model's own forward)."""
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            names = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            names = []
        module = names[-2] if len(names) >= 2 else ""
        if node.op_type in LAYER_OPS and module.endswith(".bn"):
            module = module[:-3]  # a BatchNorm the exporter folded into its conv: the conv's layer
        return module or top_level
    # legacy exporter: "/blocks/blocks.0/blocks.0.0/se/fc1/Conv"
    path = ""
    for seg in node.name.strip("/").split("/")[:-1]:
        path = seg if (not path or seg.startswith(path + ".")) else f"{path}.{seg}"
    return path or top_level


def ancestors(module: str) -> list[str]:
    """``a.b.c`` -> ``[a.b.c, a.b, a]``."""
    parts = module.split(".") if module else []
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def matches(module: str, pattern: str) -> bool:
    """Whether ``module`` or a module above it matches the glob ``pattern``."""
    return any(fnmatch.fnmatchcase(m, pattern) for m in ancestors(module))


def kept_modules(modules: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The outermost of ``modules`` matching one of ``patterns`` (their submodules are kept with them)."""
    kept: list[str] = []
    for m in modules:
        if m and any(matches(m, p) for p in patterns) and not any(matches(m, k) for k in kept):
            kept.append(m)
    return kept


def outside_modules(names: Sequence[str]) -> Any:
    """A PT2E quantizer node filter: true for the nodes of a ``torch.export`` graph that come from
    none of the modules ``names`` (by their fully qualified names)."""
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    inside = [get_module_name_filter(name) for name in names]
    return lambda node: not any(f(node) for f in inside)


def quantized_nodes(modules: Sequence[str], keep_float: Sequence[str] = (), only: Sequence[str] = ()) -> Any:
    """A PT2E quantizer node filter for a model with these ``modules`` (names), or None when every
    node is quantized: true for the ops that come from one of the modules ``only`` (any module when
    empty) and from none matching the glob patterns ``keep_float``, and for the graph's inputs and
    parameters (quantizers ask about an op's weight node too)."""
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    kept = kept_modules(modules, check_patterns(keep_float, modules))
    missing = [m for m in only if m not in modules]
    if missing:
        raise ScopeError(f"only: no module named {missing} in the model (top-level modules: "
                         f"{sorted({m.split('.')[0] for m in modules})})")
    if not kept and not only:
        return None
    outside = outside_modules(kept)
    within = [get_module_name_filter(name) for name in only]

    def selected(node: Any) -> bool:
        if node.op != "call_function":
            return True
        return outside(node) and (not within or any(f(node) for f in within))
    return selected


def block_of(module: str) -> str:
    """The block a module belongs to: ``blocks.<stage>.<block>`` in carve models, else its top-level module."""
    parts = module.split(".")
    if parts[0] in ("blocks", "features", "layers") and len(parts) >= 3:
        return ".".join(parts[:3])
    return parts[0]


def check_patterns(patterns: Sequence[str], modules: Iterable[str], field: str = "keep_float") -> list[str]:
    """Validate glob patterns against the model's module names; each must match at least one."""
    if isinstance(patterns, str):
        raise ScopeError(f"{field}: expected a list of glob patterns, got the string {patterns!r}")
    modules = sorted(set(modules))
    out = []
    for i, p in enumerate(patterns):
        if not isinstance(p, str) or not p.strip():
            raise ScopeError(f"{field}[{i}]: expected a non-empty glob pattern over module names, got {p!r}")
        if not any(matches(m, p) for m in modules):
            sample = ", ".join(modules[:6])
            raise ScopeError(f"{field}[{i}]: pattern {p!r} matches no module of the model (module names look "
                             f"like {sample}, ...)")
        out.append(p)
    return out


def name_nodes(src: Path, dst: Path, top_level: str = "") -> dict[str, str]:
    """Copy ``src`` to ``dst`` with every node named ``<module>/<op>_<i>``; return name -> module.
    Nodes of the model's own forward are given ``top_level``, or their producer's module when it is ''."""
    import onnx

    model = onnx.load(str(src))
    producer: dict[str, str] = {}
    modules: dict[str, str] = {}
    for i, node in enumerate(model.graph.node):
        module = _module_of(node, top_level) if (node.metadata_props or node.name) else ""
        if not module:  # nodes an optimiser created (e.g. HardSwish split in two): the producer's module
            module = next((producer[t] for t in node.input if t in producer), "")
        node.name = f"{module}/{node.op_type}_{i}"
        modules[node.name] = module
        for t in node.output:
            producer[t] = module
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.tmp.onnx")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return modules


def _check_calibration(calibration: str) -> None:
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration: expected one of {list(CALIBRATIONS)}, got {calibration!r}")


class QdqGraph:
    """One FP32 export of ``model`` with named nodes and one calibration, quantized to any variant."""

    def __init__(self, model: nn.Module, images: list[torch.Tensor], out_dir: str | Path,
                 calibration: str = "percentile", per_channel: bool = True, dynamic_batch: bool = False):
        _check_calibration(calibration)
        size, cin = images[0].shape[-1], images[0].shape[1]
        # free height and width: calibrated and evaluated at the data's size, timed at the deploy size
        fp32 = export_onnx(model.eval(), Path(out_dir) / "model_fp32.onnx", input_size=size, in_channels=cin,
                           dynamic_size=True, dynamic_batch=dynamic_batch)
        self._prepare(fp32, images, out_dir, calibration, per_channel)

    @classmethod
    def from_onnx(cls, fp32: str | Path, images: list[torch.Tensor], out_dir: str | Path,
                  calibration: str = "percentile", per_channel: bool = True, top_level: str = "") -> QdqGraph:
        """The same for a model already exported to ``fp32`` (by the dynamo exporter, so its nodes
        know their modules); the nodes of its top-level forward are named after ``top_level``."""
        graph = cls.__new__(cls)
        graph._prepare(Path(fp32), images, out_dir, calibration, per_channel, top_level)
        return graph

    def _prepare(self, fp32: Path, images: list[torch.Tensor], out_dir: str | Path, calibration: str,
                 per_channel: bool, top_level: str = "") -> None:
        _check_calibration(calibration)
        self.out_dir = Path(out_dir)
        self.images, self.calibration, self.per_channel = images, calibration, per_channel
        named = self.out_dir / "model_fp32_named.onnx"
        self._named_scopes = name_nodes(fp32, named, top_level)
        self.source = named
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = self.out_dir / "model_fp32_pre.onnx"
            quant_pre_process(str(named), str(pre), skip_symbolic_shape=True)
            self.source = pre
        except Exception:  # pre-processing is an optimisation; quantize the plain export without it
            pass
        # pre-processing can add nameless nodes: name them again after their producers
        self.modules = name_nodes(self.source, self.source, top_level)
        self.fp32_path = fp32
        self.cache = self.out_dir / "calibration_ranges.json"
        if self.cache.exists():
            self.cache.unlink()  # ranges of another model or calibration set

    # -- names -----------------------------------------------------------------------------------

    def module_names(self) -> list[str]:
        """Every module some node comes from, and the modules above them."""
        return sorted({a for m in self.modules.values() for a in ancestors(m)})

    def units(self, granularity: str = "block") -> list[str]:
        """Blocks (``blocks.i.j``, stem, head layers) or weighted layers, in graph order."""
        if granularity not in ("block", "layer"):
            raise ValueError(f"granularity: expected 'block' or 'layer', got {granularity!r}")
        out: list[str] = []
        for name, module in self.modules.items():
            if not module:
                continue
            if granularity == "layer" and name.rsplit("/", 1)[-1].rsplit("_", 1)[0] not in LAYER_OPS:
                continue
            unit = block_of(module) if granularity == "block" else module
            if unit not in out:
                out.append(unit)
        return out

    def nodes_in(self, patterns: Sequence[str]) -> list[str]:
        """Names of the nodes whose module (or a module above it) matches one of ``patterns``."""
        return [n for n, m in self.modules.items() if any(matches(m, p) for p in patterns)]

    def outputs_of(self, patterns: Sequence[str]) -> list[str]:
        """Tensors that nodes matching ``patterns`` hand to the other nodes or return, in graph order."""
        import onnx

        graph = onnx.load(str(self.source), load_external_data=False).graph
        inside = set(self.nodes_in(patterns))
        wanted = {t for n in graph.node if n.name not in inside for t in n.input} | {o.name for o in graph.output}
        return [t for n in graph.node if n.name in inside for t in n.output if t in wanted]

    # -- quantizing ------------------------------------------------------------------------------

    def calibrate(self, up_to: Sequence[str] | None = None) -> None:
        """Set the activation ranges every later :meth:`quantize` reads; with ``up_to``, on the graph
        cut after those tensors (what follows them, e.g. NMS with outputs of varying size, is not
        calibrated and so cannot be quantized)."""
        source = self.source
        if up_to is not None:
            import onnx.utils

            source = self.out_dir / "model_fp32_calibrated_part.onnx"
            name = onnx_session(self.source, 1).get_inputs()[0].name
            onnx.utils.extract_model(str(self.source), str(source), [name], list(up_to), check_model=False)
        if self.cache.exists():
            self.cache.unlink()
        self._quantize_static(source, self.out_dir / "model_calibration_run.onnx", [])

    def quantize(self, path: str | Path, keep_float: Sequence[str] = (), only: Sequence[str] | None = None) -> Path:
        """Write a QDQ INT8 model to ``path``: all nodes INT8 except those matching ``keep_float``;
        with ``only``, just the nodes matching those patterns are INT8."""
        exclude = set(self.nodes_in(keep_float))
        if only is not None:
            inside = set(self.nodes_in(only))
            exclude |= {n for n in self.modules if n not in inside}
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")
        # calibrate on the full graph the first time (unless calibrate() did); later variants reuse its ranges
        self._quantize_static(self.source, tmp, sorted(exclude))
        os.replace(tmp, path)
        return path

    def _quantize_static(self, source: Path, dst: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        methods = dict(zip(CALIBRATIONS, (CalibrationMethod.MinMax, CalibrationMethod.Percentile,
                                          CalibrationMethod.Entropy)))
        name = onnx_session(source, 1).get_inputs()[0].name
        images = self.images

        class Reader(CalibrationDataReader):
            """The images in chunks of CALIBRATION_CHUNK: ONNX Runtime's calibrators hold every
            intermediate output of a ``collect_data`` call at once (about 24 GB for 1,010 images
            at 224 px), and merge their ranges and histograms across calls."""

            def __init__(self) -> None:
                self.set_range(0, len(images))

            def __len__(self) -> int:  # a multiple of the chunk, as ONNX Runtime's strided loop requires
                return -(-len(images) // CALIBRATION_CHUNK) * CALIBRATION_CHUNK

            def set_range(self, start_index: int, end_index: int) -> None:
                self.it = iter(images[start_index:end_index])

            def get_next(self) -> dict[str, Any] | None:
                x = next(self.it, None)
                return None if x is None else {name: x.numpy()}

        with contextlib.redirect_stdout(sys.stderr):  # ONNX Runtime's calibration progress is no output
            quantize_static(str(source), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=self.per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=methods[self.calibration],
                            nodes_to_exclude=exclude, calibration_cache_path=str(self.cache),
                            extra_options={"CalibStridedMinMax": CALIBRATION_CHUNK})


__all__ = ["CALIBRATIONS", "CALIBRATION_CHUNK", "QdqGraph", "ScopeError", "ancestors", "block_of", "check_patterns",
           "kept_modules", "matches", "name_nodes", "outside_modules", "quantized_nodes"]
