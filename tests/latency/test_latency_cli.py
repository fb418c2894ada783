"""``carve latency`` and ``carve zoo bench`` on tiny inputs, and the zoo-vs-twin benchmark pieces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carve.cli import main
from carve.latency import QUICK
from carve.latency.zoo_bench import bench_zoo, format_rows, peer_model
from carve.zoo import parse_spec


def test_latency_cli_measure_build_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = parse_spec(dict(name="cli_tiny", family="test", stem=dict(channels=8),
                           stages=[[dict(kind="ir", out_channels=8, expansion=2)]], head=dict(num_classes=10)))
    path = spec.save(tmp_path / "tiny.json")
    db, table = str(tmp_path / "lat.db"), str(tmp_path / "table.json")
    args = ["--size", "32", "--threads", "1", "--db", db]
    assert main(["latency", "measure", str(path), *args, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["median_ms"] > 0 and not first["cached"] and first["fingerprint"]["threads"] == 1
    assert main(["latency", "measure", str(path), *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"]
    assert main(["latency", "build-table", "--specs", str(path), "--fit", "1", "--out", table, *args]) == 0
    assert "3 parts from 1 specs" in capsys.readouterr().out
    assert main(["latency", "predict", str(path), "--table", table, *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predicted_ms"] > 0 and out["spec"] == "cli_tiny"
    assert main(["latency", "build-table", *args]) == 2  # neither a space nor specs: a clear error
    assert "--space" in capsys.readouterr().err


def test_bench_zoo_pairs_each_model_with_its_twin() -> None:
    module, name = peer_model("mobilenet_v3_small_075")
    assert name == "timm:mobilenetv3_small_075" and sum(p.numel() for p in module.parameters()) > 1e6
    assert peer_model("carve_100") is None
    rows = bench_zoo(["mobilenet_v3_small_075"], input_size=32, threads=1, vs_peers=True, protocol=QUICK)
    (row,) = rows
    # the ratio is paired round by round (compare), so close to the medians' ratio but not equal to it
    assert row["peer"] == name and row["ratio"] == pytest.approx(row["median_ms"] / row["peer_median_ms"], rel=0.25)
    assert "ours/twin" in format_rows(rows)
    with pytest.raises(KeyError, match="unknown model"):
        bench_zoo(["no_such_net"], protocol=QUICK)
