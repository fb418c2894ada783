"""A truncated done marker in a run folder is named and counts as not done (the step runs again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.cli import main
from carve.run.state import RunState


def test_a_truncated_done_marker_counts_as_not_done(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    state = RunState(tmp_path / "run")
    state.mark_done("zoo", {"input_size": 224, "models": ["a", "b"]}, "hash", 1.0)
    marker = state.marker("zoo")
    marker.write_text(marker.read_text()[:60])  # a disk that filled up mid-write, or a hand edit
    rc = main(["run", "--tiny", "--out", str(state.root), "--steps", "report"])
    captured = capsys.readouterr()
    assert rc == 0, captured.out
    assert f"{marker}: unreadable done marker" in captured.err and "'zoo' counts as not done" in captured.err
    again = RunState(state.root)
    assert not again.is_done("zoo")
    with pytest.raises(RuntimeError, match="step 'zoo' has not finished"):
        again.summary("zoo")
    assert capsys.readouterr().err.count("unreadable done marker") == 1  # said once per run
