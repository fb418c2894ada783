"""``measure``: one model's latency under a fixed protocol, with its conditions, cached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from carve.zoo import create_model

from .artefact import ARTEFACT_RUNTIMES
from .cache import LatencyCache
from .fingerprint import device_fingerprint, fingerprint_key, physical_cores
from .program_formats import PROGRAMS
from .protocol import PROTOCOLS, Protocol, summarize, time_runs, warm_up
from .result import LatencyResult
from .runtime import input_channels, make_runner, model_key, resolve_spec_or_module, torch_threads


_CACHES: dict[str, LatencyCache] = {}


def open_cache(cache: bool | str | Path | LatencyCache | None) -> LatencyCache | None:
    """None for ``cache`` False/None, the default database for True, else the given one."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, LatencyCache):
        return cache
    from .cache import default_db_path

    path = str(default_db_path() if cache is True else Path(cache))
    if path not in _CACHES:
        _CACHES[path] = LatencyCache(path)
    return _CACHES[path]


def cache_key(mkey: str, conditions: dict[str, Any], fp: dict[str, Any]) -> str:
    parts = {k: conditions[k] for k in ("runtime", "device", "batch", "input_size", "in_channels", "channels_last",
                                        "clock")}
    parts.update(model=mkey, fingerprint=fingerprint_key(fp))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def measure(model_or_spec: Any, device: str = "cpu", batch: int = 1, input_size: int = 224,
            threads: int | None = None, runtime: str = "eager", channels_last: bool = False,
            cache: bool | str | Path | LatencyCache | None = True, remeasure: bool = False,
            protocol: Protocol | None = None, key: str | None = None,
            in_channels: int | None = None) -> LatencyResult:
    """Latency of one inference of ``model_or_spec`` (module, ArchSpec, dict, zoo name or spec file).

    ``threads`` defaults to the physical cores this process may use. A cached figure for the same
    model, input shape, runtime and device fingerprint is returned unless ``remeasure``.
    ``key`` overrides the model's cache identity and ``in_channels`` its input width (for blocks
    measured in isolation). ``device`` may be a carve agent's ``http://HOST:PORT`` (token in
    ``$CARVE_AGENT_TOKEN``): the model's ONNX export (a .pte for executorch, a .tflite for litert) is
    timed there in ``runtime`` (onnxruntime, openvino, executorch or litert; ``threads`` default 1) and the figure carries
    that device's fingerprint.
    """
    from .remote import is_remote, remote_fingerprint

    protocol = protocol or Protocol()
    remote = is_remote(device)
    if remote and runtime not in ARTEFACT_RUNTIMES:
        raise ValueError(f"runtime: a remote device times artefacts ({', '.join(ARTEFACT_RUNTIMES)}), got "
                         f"{runtime!r}")
    threads = threads or (1 if remote else physical_cores())
    found = resolve_spec_or_module(model_or_spec)  # a spec is built only when it must be measured
    is_module = isinstance(found, torch.nn.Module)
    mkey = key or (model_key(found) if is_module else f"spec:{found.hash()}")
    fp = remote_fingerprint(device, threads, runtime) if remote else device_fingerprint(device, threads, runtime)
    db = open_cache(cache)
    cin = in_channels or (input_channels(found) if is_module else found.in_channels)
    shape_cond = dict(runtime=runtime, device=device, batch=batch, input_size=input_size, in_channels=cin,
                      channels_last=channels_last, clock=protocol.clock)
    ckey = cache_key(mkey, shape_cond, fp)
    if db is not None and not remeasure:
        hit = db.get(ckey)
        if hit is not None:
            result = LatencyResult.from_dict(hit)
            result.cached = True
            return result
    model = found if is_module else create_model(found)
    if remote:
        result = _measure_on_agent(model, device, runtime, batch, input_size, cin, threads, protocol, mkey)
        fp = result.fingerprint
    else:
        result = _measure_here(model, device, runtime, batch, input_size, cin, threads, channels_last, protocol, mkey,
                               fp)
    if db is not None:
        db.put(ckey, mkey, f"{batch}x{cin}x{input_size}x{input_size}", runtime, fingerprint_key(fp),
               result.to_dict())
    return result


def _measure_on_agent(model: torch.nn.Module, device: str, runtime: str, batch: int, input_size: int, cin: int,
                      threads: int, protocol: Protocol, mkey: str) -> LatencyResult:
    from .remote import measure_remote
    from .runtime import cached_onnx, cached_program

    name = next((k for k, v in PROTOCOLS.items() if v == protocol), None)
    if name is None:
        raise ValueError(f"protocol: a remote device runs a named protocol ({', '.join(PROTOCOLS)}), not a custom one")
    cond: dict[str, Any] = {}
    if runtime in PROGRAMS:
        path = cached_program(runtime, model, batch, input_size, cin, None, mkey, cond)
    else:
        path = cached_onnx(model.eval(), batch, input_size, cin, None, mkey, cond)
    result = measure_remote(device, path, runtime, threads, batch, input_size, name)
    result.conditions.update(cond, model_key=mkey, channels_last=False)
    return result


def _measure_here(model: torch.nn.Module, device: str, runtime: str, batch: int, input_size: int, cin: int,
                  threads: int, channels_last: bool, protocol: Protocol, mkey: str,
                  fp: dict[str, Any]) -> LatencyResult:
    with torch_threads(threads), torch.inference_mode():
        runner = make_runner(model, runtime, device, batch, input_size, threads, channels_last, key=mkey,
                             in_channels=cin, clock=protocol.clock)
        warm, first = warm_up(runner.timed, protocol)
        stats = summarize(time_runs(runner.timed, protocol))
    conditions = dict(runner.conditions, model_key=mkey, protocol=protocol.as_dict())
    result = LatencyResult(median_ms=stats.median_ms, p10_ms=stats.p10_ms, p90_ms=stats.p90_ms, runs=stats.runs,
                           outliers=stats.outliers, conditions=conditions, fingerprint=fp, mean_ms=stats.mean_ms,
                           outlier_ms=stats.outlier_ms, warmup_runs=warm, first_call_ms=first, ci_rel=stats.ci_rel)
    return result
