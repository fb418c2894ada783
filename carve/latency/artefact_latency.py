"""``measure_artefact``: latency of a deployed file (ONNX or OpenVINO IR) under the engine's protocol."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .artefact import open_artefact
from .fingerprint import device_fingerprint
from .result import LatencyResult
from .protocol import Protocol, summarize, time_runs, warm_up
from .runtime import cpu_timer


def file_digest(path: str | Path) -> str:
    """sha256 of a file (of an OpenVINO IR's .xml and .bin together; of a folder's files and their
    relative paths, such as a Core ML package): the artefact's identity."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        parts = sorted(f for f in path.rglob("*") if f.is_file())
    else:
        parts = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    for part in parts:
        if path.is_dir():
            h.update(part.relative_to(path).as_posix().encode() + b"\0")
        with open(part, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def measure_artefact(path: str | Path, runtime: str | None = None, threads: int = 1, batch: int = 1,
                     input_size: int = 224, protocol: Protocol | None = None) -> LatencyResult:
    """Median latency of one call of the artefact at ``path`` on this CPU, with the device fingerprint.

    ``runtime`` defaults to ONNX Runtime for .onnx and OpenVINO for .xml; ``batch`` and
    ``input_size`` fill the axes the file leaves free (fixed axes are used as they are).
    """
    protocol = protocol or Protocol()
    art = open_artefact(path, runtime, threads)
    x = art.example(batch, input_size)
    timed = cpu_timer(lambda: art.run(x), protocol.clock)
    warm, first = warm_up(timed, protocol)
    stats = summarize(time_runs(timed, protocol))
    fp = device_fingerprint("cpu", threads, art.runtime)
    cond = dict(runtime=art.runtime, device="cpu", batch=int(x.shape[0]), input_size=int(x.shape[-1]),
                in_channels=int(x.shape[1]), threads=threads, clock=protocol.clock, artefact=Path(path).name,
                artefact_sha256=file_digest(path), protocol=protocol.as_dict())
    return LatencyResult(median_ms=stats.median_ms, p10_ms=stats.p10_ms, p90_ms=stats.p90_ms, runs=stats.runs,
                         outliers=stats.outliers, conditions=cond, fingerprint=fp, mean_ms=stats.mean_ms,
                         outlier_ms=stats.outlier_ms, warmup_runs=warm, first_call_ms=first, ci_rel=stats.ci_rel)
