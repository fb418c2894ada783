"""A detector for the mobile runtimes, ExecuTorch (``.pte``) and LiteRT (``.tflite``), the way their
SSD deployments run: the program holds the network, box decoding and the per-class candidate
scores (the graph with ``pre_nms=True``), and class-wise NMS with the final top-k run after it in
carve's Python post-processing (:func:`carve.finetune.detector_graph.select_detections`, the very
function the ONNX graph ends with). Neither runtime has a kernel for ``carve::class_nms``.

The program's outputs, for ``images`` ``[B, 3, S, S]`` as the full graph takes them:

- ``boxes`` ``[B, N, 4]`` float32, decoded and clipped, ``x1, y1, x2, y2`` in input pixels;
- ``candidates`` ``[B, C, N]`` float32, the score of box ``n`` for class column ``c`` where it is a
  candidate, -1 where it is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from carve.latency.program_formats import PROGRAMS

from .detector_graph import DetectorGraph, NmsSettings, select_detections
from .detector_int8 import NETWORK

PROGRAM_TARGETS = tuple(PROGRAMS)
PRE_NMS_OUTPUTS = ("boxes", "candidates")
POSTPROCESSING = ("box decoding and per-class candidate scores in the program; class-wise NMS and the best "
                  "detections_per_img outside it, in carve's Python post-processing "
                  "(carve.finetune.detector_graph.select_detections, as the ONNX graph runs them), then the boxes' "
                  "scaling to the image size (carve.finetune.detector_export.split_detections)")


def export_program(graph: DetectorGraph, path: str | Path, target: str, size: int, batch: int,
                   calib: list[torch.Tensor] | None = None) -> Path:
    """``graph`` up to its candidates as an ExecuTorch or LiteRT program for a fixed
    ``batch x 3 x size x size`` input, written to ``path``: FP32, or with ``calib`` (batches as the
    program takes them) its backbone and head INT8 through the target's PT2E quantizer (box
    decoding and the candidate scores stay float)."""
    if target not in PROGRAM_TARGETS:
        raise ValueError(f"target: expected one of {list(PROGRAM_TARGETS)}, got {target!r}")
    if target == "executorch":
        from carve.latency.executorch_runtime import export_pte as export
    else:
        from carve.latency.litert_runtime import export_tflite as export
    was = graph.pre_nms
    graph.pre_nms = True
    try:
        return export(graph.eval(), path, input_size=size, batch=batch, in_channels=3, calib=calib,
                      only=NETWORK if calib is not None else ())
    finally:
        graph.pre_nms = was


def program_quantization(target: str) -> dict[str, object]:
    """What an INT8 program's quantization did, for the export report."""
    quantizer = ("the PT2E XNNPACK quantizer (executorch)" if target == "executorch"
                 else "litert-torch's PT2E quantizer")
    return dict(method=f"{quantizer}: static INT8, symmetric, per-channel weights, calibrated in PyTorch; "
                       "lowered to XNNPACK's INT8 kernels", quantized_modules=list(NETWORK),
                float="input normalisation, box decoding and candidate scores (in the program); NMS (after it)")


def with_nms(run_all: Callable[[np.ndarray], list[np.ndarray]], settings: NmsSettings
             ) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A pre-NMS program's ``run_all`` followed by the selection: the full graph's
    ``(boxes, scores, labels, batch_index)`` arrays."""

    def run(x: np.ndarray) -> list[np.ndarray]:
        outputs = run_all(x)
        if len(outputs) != len(PRE_NMS_OUTPUTS):
            raise ValueError(f"expected a pre-NMS detector program with outputs {list(PRE_NMS_OUTPUTS)}, "
                             f"got {len(outputs)} outputs")
        boxes, candidates = (torch.from_numpy(np.ascontiguousarray(o, np.float32)) for o in outputs)
        return [t.numpy() for t in select_detections(boxes, candidates, settings)]
    return run
