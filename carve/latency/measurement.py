"""``measure``: one model's latency under a fixed protocol, with its conditions, cached."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from carve.zoo import create_model

from .cache import LatencyCache
from .fingerprint import device_fingerprint, fingerprint_key, physical_cores
from .protocol import Protocol, summarize, time_runs, warm_up
from .runtime import input_channels, make_runner, model_key, resolve_spec_or_module, torch_threads


@dataclass
class LatencyResult:
    """A latency figure (ms) with its spread, the conditions it was taken under and the device."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    outliers: int
    conditions: dict[str, Any]
    fingerprint: dict[str, Any]
    mean_ms: float = 0.0
    outlier_ms: list[float] = field(default_factory=list)
    warmup_runs: int = 0
    first_call_ms: float = 0.0
    ci_rel: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def __str__(self) -> str:
        c = self.conditions
        return (f"{self.median_ms:.3f} ms median (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, {self.runs} runs, "
                f"{self.outliers} outliers) {c.get('runtime')} {c.get('device')} batch {c.get('batch')} "
                f"{c.get('input_size')} px, {c.get('threads')} threads{' [cached]' if self.cached else ''}")


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
    measured in isolation).
    """
    protocol = protocol or Protocol()
    threads = threads or physical_cores()
    found = resolve_spec_or_module(model_or_spec)  # a spec is built only when it must be measured
    is_module = isinstance(found, torch.nn.Module)
    mkey = key or (model_key(found) if is_module else f"spec:{found.hash()}")
    fp = device_fingerprint(device, threads, runtime)
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
    with torch_threads(threads), torch.inference_mode():
        runner = make_runner(model, runtime, device, batch, input_size, threads, channels_last, key=mkey,
                             in_channels=cin, clock=protocol.clock)
        warm, first = warm_up(runner.timed, protocol)
        stats = summarize(time_runs(runner.timed, protocol))
    conditions = dict(runner.conditions, model_key=mkey, protocol=protocol.as_dict())
    result = LatencyResult(median_ms=stats.median_ms, p10_ms=stats.p10_ms, p90_ms=stats.p90_ms, runs=stats.runs,
                           outliers=stats.outliers, conditions=conditions, fingerprint=fp, mean_ms=stats.mean_ms,
                           outlier_ms=stats.outlier_ms, warmup_runs=warm, first_call_ms=first, ci_rel=stats.ci_rel)
    if db is not None:
        db.put(ckey, mkey, f"{batch}x{cin}x{input_size}x{input_size}", runtime, fingerprint_key(fp),
               result.to_dict())
    return result
