"""Latency of zoo models, optionally beside their torchvision/timm twins (interleaved, one process)."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn
from tqdm import tqdm

from carve.zoo import create_model, get_entry, list_models

from .comparison import compare
from .measurement import measure
from .protocol import Protocol


def peer_model(name: str) -> tuple[nn.Module, str] | None:
    """The randomly initialised torchvision (preferred) or timm twin of zoo model ``name``, if any."""
    entry = get_entry(name)
    if entry.torchvision:
        import torchvision

        return torchvision.models.get_model(entry.torchvision, weights=None), f"torchvision:{entry.torchvision}"
    if entry.timm:
        import timm

        return timm.create_model(entry.timm, pretrained=False), f"timm:{entry.timm}"
    return None


def bench_zoo(names: Sequence[str] | None = None, device: str = "cpu", batch: int = 1, input_size: int = 224,
              runtime: str = "eager", threads: int | None = None, vs_peers: bool = False,
              protocol: Protocol | None = None, cache: Any = True, progress: bool = False) -> list[dict[str, Any]]:
    """One row per zoo model, each timed on its own: median/p10/p90 ms; with ``vs_peers`` the twin's,
    timed interleaved, and the ratio ours/peer. ``names`` are registry names or globs (default: the
    whole zoo)."""
    selected: list[str] = []
    for pattern in names or ["*"]:
        found = list_models(pattern) if any(c in pattern for c in "*?[") else [get_entry(pattern).name]
        selected += [n for n in found if n not in selected]
    if not selected:
        raise ValueError(f"names: no zoo model matches {list(names or [])}")
    kw = dict(device=device, batch=batch, input_size=input_size, runtime=runtime, threads=threads, protocol=protocol)
    rows = []
    for name in tqdm(selected, desc="latency: zoo", unit="model", disable=not progress):
        peer = peer_model(name) if vs_peers else None
        if peer is None:
            r = measure(name, cache=cache, **kw)
            rows.append(dict(model=name, median_ms=r.median_ms, p10_ms=r.p10_ms, p90_ms=r.p90_ms, runs=r.runs,
                             outliers=r.outliers, peer=None, conditions=r.conditions, fingerprint=r.fingerprint))
            continue
        peer_module, peer_name = peer
        c = compare([create_model(name), peer_module], names=[name, peer_name], **kw)
        ours, theirs = c.results
        rows.append(dict(model=name, median_ms=ours.median_ms, p10_ms=ours.p10_ms, p90_ms=ours.p90_ms,
                         runs=ours.runs, outliers=ours.outliers, peer=peer_name, peer_median_ms=theirs.median_ms,
                         peer_p10_ms=theirs.p10_ms, peer_p90_ms=theirs.p90_ms, ratio=c.ratios[0] / c.ratios[1],
                         conditions=ours.conditions, fingerprint=ours.fingerprint))
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``bench_zoo`` rows."""
    peers = any(r.get("peer") for r in rows)
    head = f"{'model':26s} {'median ms':>10s} {'p10':>8s} {'p90':>8s}"
    if peers:
        head += f"  {'twin':40s} {'twin ms':>9s} {'ours/twin':>9s}"
    lines = [head]
    for r in rows:
        line = f"{r['model']:26s} {r['median_ms']:10.3f} {r['p10_ms']:8.3f} {r['p90_ms']:8.3f}"
        if r.get("peer"):
            line += f"  {r['peer']:40s} {r['peer_median_ms']:9.3f} {r['ratio']:9.3f}"
        lines.append(line)
    return "\n".join(lines)
