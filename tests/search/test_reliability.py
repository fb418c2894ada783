"""``carve search run`` checks what every trial reads before the first one, and fails when none completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.cli import main
from carve.latency.table import LatencyTable

FAST = ["--runtime", "eager", "--trials", "2", "--quick-latency", "--threads", "1", "--small-input", "0",
        "--no-progress", "--no-remeasure", "--latency-size", "32"]


def _run(space: str, out: Path, capsys: pytest.CaptureFixture, *flags: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["search", "run", "--space", space, "--out", str(out), *FAST, *flags])
    return rc, capsys.readouterr().err


def test_a_missing_data_folder_is_found_before_the_first_trial(tiny_space: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    rc, err = _run(tiny_space, tmp_path / "run", capsys, "--objective", "proxy", "--data", str(tmp_path / "none"),
                   "--latency-cache", "off")
    assert rc == 2 and f"objective.data: {tmp_path / 'none'} has no train/ folder" in err
    assert not (tmp_path / "run" / "studies.db").exists()  # no study, no trial


def test_a_corrupt_latency_cache_is_found_before_the_first_trial(tiny_space: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    cache = tmp_path / "latency.db"
    cache.write_text("this is not an SQLite database, it was truncated by a full disk" * 20)
    rc, err = _run(tiny_space, tmp_path / "run", capsys, "--objective", "params", "--latency-cache", str(cache))
    assert rc == 2 and f"objective.latency_cache: {cache}: not a readable latency cache" in err
    assert not (tmp_path / "run" / "studies.db").exists()


def test_a_study_where_every_trial_failed_is_an_error_with_the_first_reason(tiny_space: str, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    table = LatencyTable(fingerprint={}).save(tmp_path / "empty-table.json")  # loads, but predicts nothing
    rc, err = _run(tiny_space, tmp_path / "run", capsys, "--objective", "params", "--latency", "predict",
                   "--latency-table", str(table))
    assert rc == 2
    assert "no trial completed (10 failed); the first failure: KeyError" in err and "latency table lacks" in err
