"""A tiny space and a fast objective, so a trial costs milliseconds."""

from __future__ import annotations

import socket

import pytest
import torch

from carve.search import ObjectiveConfig, SearchConfig

TINY_SPACE = """
name: tiny
block: ir
resolution: 32
activation: [relu, hardswish]
se: [false, true]
stem: {channels: 8, act: relu}
stages:
  - {width: [8, 16], depth: [1, 2], stride: 2, kernel: [3, 5], expansion: [1, 2]}
  - {width: [16, 24], depth: [1, 2], stride: 2, kernel: [3, 5], expansion: [2, 3]}
head: {num_classes: 10, dropout: 0.0}
"""


@pytest.fixture
def tiny_space(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return str(path)


def fast_objective(**kw) -> ObjectiveConfig:
    base = dict(accuracy="params", runtime="eager", latency="measure", latency_size=32, small_input=0, threads=1,
                latency_cache="off", latency_protocol=dict(window=1, warmup_max_windows=1, min_runs=3, max_runs=5,
                                                           max_time_s=0.01, rel_ci=1.0),
                img_size=32, data="/nonexistent", proxy_batch=4)
    base.update(kw)
    return ObjectiveConfig(**base)


def tiny_config(space: str, out_dir, **kw) -> SearchConfig:
    base = dict(space=space, objective=fast_objective(), out_dir=str(out_dir), trials=6, progress=False,
                remeasure=False, heartbeat_s=1)
    base.update(kw)
    return SearchConfig(**base)


def free_port() -> int:
    """A TCP port free on loopback now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The machine is shared: one intra-op thread avoids spin contention (timing is not tested here).
torch.set_num_threads(1)
