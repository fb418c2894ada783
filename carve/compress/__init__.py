"""Compression: fold, prune, quantize, factorise, export; one function per step, composable.

Every step takes and returns ``(model, spec)``; ``pipeline`` chains them and reports each;
``compress`` runs the steps a ``CompressConfig`` asks for. ``measure_sensitivity`` says which
blocks lose accuracy under INT8 or pruning; ``controlled_int8`` keeps them in FP32 until a top-1
budget is met. ``cluster`` palettises weights (2^bits values each) for size; ``check_mlpackage``
checks a Core ML package against its model without running it. ``prune_graph`` prunes any module
without a spec (a user's model, a detector) with Torch-Pruning's dependency graph.
"""

from .accuracy_control import ControlResult, controlled_int8
from .artefacts import OnnxCheck, file_size, state_size, to_onnx, to_program, verify_onnx
from .clustering import ClusteredSize, cluster, clustered_size
from .config import CompressConfig
from .coreml_check import PackageCheck, check_mlpackage
from .folding import fold, fuse_conv_bn
from .graph_pruning import GraphPruneResult, load_graph_pruned, prune_graph, save_graph_pruned
from .factorisation import lowrank, relative_error, svd_factors
from .stepwise import EXPORT_FORMATS, STEPS, parse_steps, pipeline
from .pruning import PruneError, prune, pruned_spec
from .report import CompressReport, StepRow
from carve.latency.qdq import QdqGraph, ScopeError
from .sensitivity import SensitivityRow, SensitivityTable, measure_sensitivity
from .stage import compress
from .quantization import QuantizeError, cast, package_aoti, quantize, quantize_ort, quantize_pt2e

__all__ = ["EXPORT_FORMATS", "STEPS", "ClusteredSize", "CompressConfig", "CompressReport", "ControlResult", "GraphPruneResult", "OnnxCheck",
           "PackageCheck", "PruneError", "QdqGraph", "QuantizeError", "ScopeError", "SensitivityRow", "SensitivityTable",
           "StepRow", "cast", "check_mlpackage", "cluster", "clustered_size", "compress", "controlled_int8", "file_size",
           "fold", "fuse_conv_bn", "load_graph_pruned", "lowrank", "measure_sensitivity", "package_aoti", "parse_steps", "pipeline", "prune", "prune_graph", "pruned_spec", "quantize", "quantize_ort", "quantize_pt2e",
           "relative_error", "save_graph_pruned", "state_size", "svd_factors", "to_onnx", "to_program", "verify_onnx"]
