"""The Ray backend on a real two-node Ray cluster (a head and one worker node, both on this machine):
trials spread over both nodes and each records the node it ran on."""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

import carve
from carve.search import run_search
from carve.search.storage import load_study

from .conftest import free_port, tiny_config


def _start_node(ray_exe: Path, env: dict[str, str], sessions: list[int], *args: str) -> None:
    """``ray start`` in a session of its own, so every process of the node can be ended by session id."""
    cmd = [str(ray_exe), "start", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
           f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    sessions.append(proc.pid)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{out[-3000:]}")


def _end_sessions(sessions: list[int]) -> None:
    """SIGKILL every process in the sessions the nodes were started in (and nothing else)."""
    import psutil

    for _ in range(3):  # raylets may still be spawning workers
        left = []
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) in sessions:
                    proc.kill()
                    left.append(proc)
            except (ProcessLookupError, PermissionError, psutil.Error):
                pass
        if not left:
            return
        psutil.wait_procs(left, timeout=5)


def _reload_ray_auth() -> None:
    """Make this process's Ray read RAY_AUTH_MODE and RAY_AUTH_TOKEN again (it caches both)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # a Ray without token authentication
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _alive_nodes(ray, n: int, timeout_s: float) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        if len(alive) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if len(alive) != n:
        pytest.fail(f"the Ray cluster has {len(alive)} alive nodes after {timeout_s:.0f} s, expected {n}: "
                    f"{ray.nodes()}")
    return alive


@pytest.fixture
def ray_cluster(monkeypatch):
    """A head node and a worker node (1 CPU each) on this machine; yields (address, node ids).

    Ray replaces a loopback --node-ip-address with the machine's own address, so the nodes register
    under that; the driver still connects through 127.0.0.1."""
    ray = pytest.importorskip("ray")
    ray_exe = Path(sys.executable).parent / "ray"
    if not ray_exe.exists():
        pytest.skip(f"no `ray` executable next to {sys.executable}")
    # Token authentication with a token of this cluster's own; usage stats off; carve importable on both nodes.
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(carve.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH")]))}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _reload_ray_auth()
    root = Path(tempfile.mkdtemp(prefix="carve-ray-"))  # short: Ray's socket paths must fit in 107 characters
    port, sessions = free_port(), []
    address = f"127.0.0.1:{port}"
    try:
        _start_node(ray_exe, dict(os.environ), sessions, "--head", f"--port={port}", "--include-dashboard=false",
                    f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
                    f"--temp-dir={root / 'head'}")
        _start_node(ray_exe, dict(os.environ), sessions, f"--address={address}", f"--temp-dir={root / 'worker'}")
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            nodes = _alive_nodes(ray, 2, timeout_s=60)
        finally:
            ray.shutdown()  # run_search connects by itself, through ray_address
        yield address, nodes
    finally:
        ray.shutdown()
        _end_sessions(sessions)
        shutil.rmtree(root, ignore_errors=True)
        monkeypatch.undo()
        _reload_ray_auth()  # a later Ray in this process must not present this cluster's token


def test_trials_run_on_both_nodes_of_a_cluster(tiny_space, tmp_path, ray_cluster):
    import ray

    address, nodes = ray_cluster
    # Two trials at once on two 1-CPU nodes: one per node. Concurrency comes from the cluster's CPUs, not
    # ray_num_cpus (a local Ray's). Each trial starts its own process (reuse_actors off): a trial takes
    # milliseconds here, so with reuse the first node's process would run both before the second's is up.
    cfg = tiny_config(tiny_space, tmp_path, trials=2, backend="ray", ray_address=address, cpus_per_trial=1.0,
                      ray_num_cpus=1, reuse_actors=False)
    try:
        result = run_search(cfg)
    finally:
        ray.shutdown()
    assert result.backend == "ray" and result.n_complete == 2
    done = load_study(cfg.name, cfg.storage_url).get_trials(states=(TrialState.COMPLETE,))
    recorded = [t.user_attrs.get("ray_node") for t in done]
    assert len(recorded) == 2 and all(r and r["id"] and r["ip"] and r["host"] for r in recorded), recorded
    assert {r["id"] for r in recorded} == nodes
