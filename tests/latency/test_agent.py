"""``carve agent`` started as a real process on loopback: figures, fingerprints and refusals."""

from __future__ import annotations

import http.client
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from carve.latency import QUICK
from carve.latency.artefact import open_artefact
from carve.latency.artefact_latency import measure_artefact
from carve.latency.remote import TOKEN_ENV, measure_remote, remote_fingerprint

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


def tiny_onnx(path: Path, channels: int = 16) -> Path:
    """A small conv net (conv, relu, conv, relu, global pool, gemm) written with onnx.helper."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3), dtype=np.float32) * 0.2, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.1, "w2")
    fc = numpy_helper.from_array(rng.standard_normal((channels, 10), dtype=np.float32), "fc")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w1, w2, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def agent() -> Iterator[str]:
    """A real ``carve agent`` process on a free loopback port (10 kB upload limit, 5 s timed phase)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "carve.cli", "agent", "--port", "0", "--token", TOKEN,
                             "--max-mb", "0.05", "--max-seconds", "5"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith("carve agent listening on http://"), line + proc.stderr.read()
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_agent_figure_matches_local_measurement_of_the_same_file(agent: str, tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "tiny.onnx")
    fp = remote_fingerprint(agent, threads=1, token=TOKEN)
    assert fp["threads"] == 1 and fp["cpu"] and fp["onnxruntime"]
    remote = measure_remote(agent, path, threads=1, input_size=64, protocol="quick", token=TOKEN)
    local = measure_artefact(path, threads=1, input_size=64, protocol=QUICK)
    assert remote.fingerprint["cpu"] == local.fingerprint["cpu"] and remote.conditions["device"] == agent
    assert remote.conditions["artefact_sha256"] == local.conditions["artefact_sha256"]
    assert remote.runs >= QUICK.min_runs and remote.median_ms > 0
    # loopback: the same CPU and runtime, so the figures agree loosely (the 10% figure is a benchmark)
    assert 0.25 < remote.median_ms / local.median_ms < 4, (remote.median_ms, local.median_ms)
    ov = measure_remote(agent, path, runtime="openvino", input_size=64, token=TOKEN)
    assert ov.conditions["runtime"] == "openvino" and "openvino" in ov.fingerprint


def test_agent_takes_openvino_ir_and_the_token_from_the_environment(agent: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from carve.latency.openvino_runtime import convert_to_ir

    xml = convert_to_ir(tiny_onnx(tmp_path / "tiny.onnx"), tmp_path / "tiny.xml")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    r = measure_remote(agent, xml, input_size=64)
    assert r.conditions["runtime"] == "openvino" and r.median_ms > 0
    assert r.conditions["artefact_sha256"] == measure_artefact(xml, input_size=64, protocol=QUICK).conditions[
        "artefact_sha256"]


def _post(agent: str, body: bytes, headers: dict[str, str], query: str = "size=64") -> tuple[int, str]:
    host, port = agent.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", f"/measure?{query}")
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    if body:
        conn.send(body)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())["error"]


def test_agent_refuses_without_token_too_big_and_not_onnx(agent: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_onnx(tmp_path / "tiny.onnx")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ValueError, match=TOKEN_ENV):
        measure_remote(agent, path)
    with pytest.raises(RuntimeError, match="401"):
        measure_remote(agent, path, token="wrong")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    data = path.read_bytes()
    assert _post(agent, data, {"Content-Length": str(len(data))}) == (401, "Authorization: a valid 'Bearer TOKEN' "
                                                                           "header is required")
    status, error = _post(agent, b"", {**auth, "Content-Length": str(10 ** 9)})  # refused before it is read
    assert status == 413 and "over the agent's limit of 50000" in error
    for junk in (pickle.dumps({"weights": [1, 2, 3]}), b"\x00" * 100, b"<net></net>"):
        status, error = _post(agent, junk, {**auth, "Content-Length": str(len(junk))})
        assert status == 415 and "not an ONNX model" in error
    dtd = b'<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaa">]><net>&a;</net>'
    status, error = _post(agent, dtd, {**auth, "Content-Length": str(len(dtd)), "X-Carve-Xml-Bytes": str(len(dtd))})
    assert status == 415 and "DTD" in error
    status, error = _post(agent, data, {**auth, "Content-Length": str(len(data))}, "size=64&runtime=executorch")
    assert status == 415 and "not an ExecuTorch program" in error
    with pytest.raises(ValueError, match="expected an ONNX file"):
        measure_remote(agent, tmp_path / "model.pt", token=TOKEN)
    status, error = _post(agent, data, {**auth, "Content-Length": str(len(data)), "X-Carve-Xml-Bytes": "x"})
    assert status == 400 and "X-Carve-Xml-Bytes" in error
    assert open_artefact(path).run(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 10)  # the file itself is fine


@pytest.mark.slow  # torch.export and XNNPACK lowering: ~30 s on the shared machine
def test_agent_times_an_executorch_program(agent: str, tmp_path: Path) -> None:
    from carve.latency.executorch_runtime import export_pte

    from .test_openvino import tiny_model

    path = export_pte(tiny_model(), tmp_path / "tiny.pte", input_size=32)
    r = measure_remote(agent, path, threads=1, input_size=32, token=TOKEN)
    assert r.conditions["runtime"] == "executorch" and r.median_ms > 0 and "executorch" in r.fingerprint
    status, error = _post(agent, path.read_bytes(), {"Authorization": f"Bearer {TOKEN}",
                                                      "Content-Length": str(path.stat().st_size)})
    assert status == 400 and "runtime=executorch" in error


def test_agent_times_a_litert_model(agent: str, tmp_path: Path) -> None:
    from carve.latency.litert_runtime import export_tflite

    from .test_openvino import tiny_model

    path = export_tflite(tiny_model(), tmp_path / "tiny.tflite", input_size=32)
    r = measure_remote(agent, path, threads=1, input_size=32, token=TOKEN)
    assert r.conditions["runtime"] == "litert" and r.median_ms > 0 and "litert" in r.fingerprint
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Length": str(path.stat().st_size)}
    status, error = _post(agent, path.read_bytes(), auth)
    assert status == 400 and "runtime=litert" in error
    junk = b"\x00" * 64
    status, error = _post(agent, junk, {**auth, "Content-Length": str(len(junk))}, "runtime=litert")
    assert status == 415 and "not a LiteRT model" in error


@pytest.mark.slow  # an ONNX export (dynamo) of a carve spec: ~30 s on the shared machine
def test_latency_measure_on_a_remote_device(agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from carve.cli import main
    from carve.zoo import parse_spec

    spec = parse_spec(dict(name="agent_tiny", family="test", stem=dict(channels=8),
                           stages=[[dict(kind="ir", out_channels=8, expansion=2)]], head=dict(num_classes=10)))
    path = spec.save(tmp_path / "tiny.json")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    argv = ["latency", "measure", str(path), "--device", agent, "--runtime", "onnxruntime", "--size", "32",
            "--db", str(tmp_path / "lat.db"), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["conditions"]["device"] == agent and first["fingerprint"]["threads"] == 1 and not first["cached"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["cached"]
    assert main([*argv[:5], "--runtime", "eager"]) == 2
    assert "a remote device times artefacts" in capsys.readouterr().err


def test_interleaved_comparison_refuses_a_remote_device() -> None:
    from carve.latency import compare

    with pytest.raises(ValueError, match="interleaved comparison runs in this process"):
        compare(["carve_100"], device="http://127.0.0.1:9", protocol=QUICK)
