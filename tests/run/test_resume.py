"""Kill ``carve run`` in the middle of the search, start it again: nothing finished is redone."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path



REPO = Path(__file__).resolve().parents[2]


def complete_params(db: Path) -> list[tuple]:
    with sqlite3.connect(db, timeout=5) as con:
        rows = con.execute("select t.number, p.param_name, p.param_value from trials t join trial_params p "
                           "on p.trial_id = t.trial_id where t.state = 'COMPLETE'").fetchall()
    by_trial: dict[int, list] = {}
    for number, name, value in rows:
        by_trial.setdefault(number, []).append((name, value))
    return [tuple(sorted(v)) for v in by_trial.values()]


def complete_trials(db: Path) -> dict[int, tuple]:
    if not db.is_file():
        return {}
    try:
        with sqlite3.connect(db, timeout=5) as con:
            rows = con.execute("select t.number, v.objective, v.value from trials t join trial_values v "
                               "on v.trial_id = t.trial_id where t.state = 'COMPLETE'").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return {}
    out: dict[int, list] = {}
    for number, objective, value in rows:
        out.setdefault(number, []).append((objective, value))
    return {n: tuple(sorted(v)) for n, v in out.items()}


def carve_run(out: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "carve.cli", "run", "--tiny", "--config", str(config), "--out", str(out),
            "--steps", "zoo,search"]


def test_killed_search_resumes_without_redoing_steps_or_trials(tmp_path, test_weights):
    config = tmp_path / "three.yaml"
    config.write_text("search: {trials: 3}\n")
    out = tmp_path / "run"
    db = out / "search" / "studies.db"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CARVE_WEIGHTS_DIR": str(test_weights)}
    proc = subprocess.Popen(carve_run(out, config), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not complete_trials(db) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.kill()
    finally:
        proc.wait()
    before = complete_trials(db)
    assert 1 <= len(before) < 3
    zoo_marker = (out / "zoo" / "done.json").read_bytes()
    assert not (out / "search" / "done.json").exists()

    again = subprocess.run(carve_run(out, config), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "step 1/2 zoo: already done, skipped" in again.stderr
    after = complete_trials(db)
    assert len(after) == 3
    assert {n: after[n] for n in before} == before  # finished trials kept, not re-run
    params = complete_params(db)
    assert len(set(params)) == len(params), "a finished trial's architecture was sampled and trained again"
    assert (out / "zoo" / "done.json").read_bytes() == zoo_marker
    assert (out / "search" / "done.json").is_file()
