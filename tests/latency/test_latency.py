"""Latency measurement: protocol, fingerprint, cache, runtimes, comparison, CUDA."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from carve.latency import QUICK, LatencyCache, compare, measure
from carve.latency.protocol import Protocol, summarize
from carve.zoo import create_model, parse_spec


def tiny_spec(width: int = 8, blocks: int = 1, name: str = "tiny"):
    return parse_spec(dict(
        name=name, family="test", stem=dict(channels=width, stride=2),
        stages=[[dict(kind="ir", out_channels=width, expansion=2) for _ in range(blocks)]],
        head=dict(num_classes=10)))


@pytest.fixture
def db(tmp_path: Path) -> LatencyCache:
    return LatencyCache(tmp_path / "latency.db")


@pytest.fixture(scope="module")
def onnx_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CARVE_CACHE_DIR for the tests that export tiny_spec() to ONNX: it is exported once."""
    return tmp_path_factory.mktemp("carve-cache")


def test_measure_protocol_fingerprint_and_cache(db: LatencyCache) -> None:
    spec = tiny_spec()
    r = measure(spec, input_size=32, threads=1, cache=db, protocol=QUICK)
    assert not r.cached
    assert r.runs >= QUICK.min_runs and r.warmup_runs >= 1 + QUICK.window
    assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.outliers == len(r.outlier_ms) and r.outliers < r.runs
    assert r.conditions["threads"] == 1 and r.conditions["input_size"] == 32
    assert r.conditions["runtime"] == "eager" and r.conditions["model_key"] == f"spec:{spec.hash()}"
    fp = r.fingerprint
    assert fp["threads"] == 1 and fp["torch"] == torch.__version__ and fp["cpu"] and "onnxruntime" in fp
    again = measure(spec, input_size=32, threads=1, cache=db, protocol=QUICK)
    assert again.cached and again.median_ms == r.median_ms and len(db) == 1
    fresh = measure(spec, input_size=32, threads=1, cache=db, protocol=QUICK, remeasure=True)
    assert not fresh.cached and len(db) == 1
    assert measure(spec, input_size=32, threads=1, cache=db, protocol=QUICK).median_ms == fresh.median_ms
    other = measure(spec, input_size=48, threads=1, cache=db, protocol=QUICK)  # another shape is another row
    assert not other.cached and len(db) == 2


def test_measure_bad_runtime_names_the_field() -> None:
    with pytest.raises(ValueError, match="runtime"):
        measure(tiny_spec(), input_size=32, threads=1, runtime="tensorrt", cache=False, protocol=QUICK)


def test_summarize_reports_outliers_not_hides_them() -> None:
    samples = [1.0 + 0.01 * (i % 5) for i in range(50)] + [9.0, 12.0]
    s = summarize(samples)
    assert s.outliers == 2 and sorted(s.outlier_ms) == [9.0, 12.0] and s.runs == 52
    assert s.median_ms == pytest.approx(1.02) and s.p90_ms < 2


def test_onnxruntime_runtime_on_tiny_model(onnx_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = onnx_cache_dir
    monkeypatch.setenv("CARVE_CACHE_DIR", str(tmp_path))
    model = create_model(tiny_spec()).eval()
    r = measure(model, input_size=32, threads=1, runtime="onnxruntime", cache=True, protocol=QUICK)
    onnx_file = Path(r.conditions["onnx_file"])
    assert onnx_file.is_file() and onnx_file.parent.parent == tmp_path
    assert (tmp_path / "latency.db").is_file() and r.median_ms > 0 and r.conditions["threads"] == 1
    from carve.latency.onnx_export import onnx_session

    session = onnx_session(onnx_file, threads=1)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(session.run(None, {session.get_inputs()[0].name: x})[0] - ref).max() < 1e-4


def test_sessions_timed_in_turn_do_not_spin_wait(onnx_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model timed alone keeps ONNX Runtime's spin-wait (as deployed); sessions timed in turn with
    others turn it off."""
    from carve.latency.onnx_export import onnx_session

    monkeypatch.setenv("CARVE_CACHE_DIR", str(onnx_cache_dir))
    alone = measure(create_model(tiny_spec()).eval(), input_size=32, threads=1, runtime="onnxruntime", cache=False,
                    protocol=QUICK)
    assert alone.conditions["spinning"] is True
    c = compare([tiny_spec(8, 1, "small"), tiny_spec(16, 1, "wider")], input_size=32, threads=1,
                runtime="onnxruntime", protocol=QUICK)
    assert [r.conditions["spinning"] for r in c.results] == [False, False]

    key = "session.intra_op.allow_spinning"
    path = Path(alone.conditions["onnx_file"])
    assert onnx_session(path, 1, spinning=False).get_session_options().get_session_config_entry(key) == "0"
    with pytest.raises(Exception, match=key):  # not set: ONNX Runtime's default, spinning
        onnx_session(path, 1).get_session_options().get_session_config_entry(key)


def test_compare_interleaves_and_ranks(db: LatencyCache) -> None:
    small, big = tiny_spec(8, 1, "small"), tiny_spec(64, 6, "big")
    c = compare([small, big], input_size=64, threads=1, protocol=QUICK)
    assert c.names == ["small", "big"] and c.ratios[0] == 1.0
    assert c.ratios[1] > 1.5  # six 64-wide blocks against one 8-wide block: far apart even on a busy CPU
    assert all(r.conditions["interleaved"] for r in c.results)
    assert abs(c.results[0].runs - c.results[1].runs) <= 1
    assert "ratio" in c.table()


def _writer(path: str, worker: int, n: int, barrier) -> None:
    cache = LatencyCache(path, timeout_s=60)
    barrier.wait()
    for i in range(n):
        cache.put(f"w{worker}-{i}", "m", "1x3x32x32", "eager", "fp", {"median_ms": float(i), "worker": worker})
        cache.put(f"shared-{i % 10}", "m", "1x3x32x32", "eager", "fp", {"median_ms": float(i), "worker": worker})
    cache.close()


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path, n = str(tmp_path / "latency.db"), 150
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, n, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = LatencyCache(path)
    assert cache.integrity_ok()
    assert len(cache) == 2 * n + 10
    for w in (0, 1):
        for i in (0, n // 2, n - 1):
            assert cache.get(f"w{w}-{i}") == {"median_ms": float(i), "worker": w}
    assert cache.get("shared-3")["worker"] in (0, 1)


@pytest.mark.hardware
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the CUDA-event "
                    "timing path runs only where a GPU is present")
def test_cuda_path_uses_events(db: LatencyCache) -> None:
    r = measure(tiny_spec(), device="cuda", input_size=32, cache=db, protocol=QUICK)
    assert r.conditions["clock"] == "cuda-events" and r.fingerprint["gpu"]
    assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms
    assert measure(tiny_spec(), device="cuda", input_size=32, cache=db, protocol=QUICK).cached


def test_measure_leaves_the_callers_model_alone(db: LatencyCache) -> None:
    model = create_model(tiny_spec()).train()
    weight = model.stem.conv.weight
    measure(model, input_size=32, threads=1, channels_last=True, cache=db, protocol=QUICK)
    assert model.training and model.stem.conv.weight is weight and weight.is_contiguous()


def test_measure_times_a_compiled_module_compiled(db: LatencyCache) -> None:
    calls = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs):  # noqa: ANN001
        def run(*args):  # noqa: ANN002
            calls.append(1)
            return gm.forward(*args)
        return run

    compiled = torch.compile(create_model(tiny_spec()).eval(), backend=counting_backend)
    r = measure(compiled, input_size=32, threads=1, cache=db, protocol=QUICK)
    assert len(calls) >= r.runs  # every timed run went through the compiled graph, not a bare copy


def test_each_part_of_the_cache_key_alone_is_a_miss(db: LatencyCache, onnx_cache_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A figure is reused only for the same model, runtime, layout, shape, threads, clock and device."""
    import carve.latency.fingerprint as fingerprint

    monkeypatch.setenv("CARVE_CACHE_DIR", str(onnx_cache_dir))  # ONNX exports go to tmp
    spec, fast = tiny_spec(), Protocol(window=2, warmup_max_windows=1, min_runs=3, max_runs=5, max_time_s=0.05)
    base = dict(input_size=32, batch=1, threads=1, runtime="eager", channels_last=False, protocol=fast)
    first = measure(spec, cache=db, **base)
    assert not first.cached and measure(spec, cache=db, **base).cached
    real_versions = fingerprint._versions()

    def on_other_torch(on: bool) -> None:  # the same CPU with another torch build: another device identity
        monkeypatch.setattr(fingerprint, "_versions", (lambda: {**real_versions, "torch": "0.0.other"}) if on
                            else (lambda: real_versions))

    variants = {
        "runtime": dict(runtime="onnxruntime"), "channels_last": dict(channels_last=True), "batch": dict(batch=2),
        "threads": dict(threads=2), "input_size": dict(input_size=40),
        "clock": dict(protocol=replace(fast, clock="cpu")),
        "fingerprint": {}, "model": dict(spec=tiny_spec(width=16)),
    }
    if torch.cuda.is_available():
        variants["device"] = dict(device="cuda", threads=None)
    hits = []
    for part, change in variants.items():
        kwargs = {**base, **change}
        model = kwargs.pop("spec", spec)
        on_other_torch(part == "fingerprint")
        got = measure(model, cache=db, **kwargs)
        if got.cached:
            hits.append(part)
            continue
        again = measure(model, cache=db, **kwargs)  # the variant has a row of its own
        assert again.cached and again.median_ms == got.median_ms, part
        on_other_torch(False)
        assert measure(spec, cache=db, **base).median_ms == first.median_ms, part  # and left the base row alone
    assert not hits, f"a change of {hits} alone returned another condition's cached figure"
    assert len(db) == 1 + len(variants)
