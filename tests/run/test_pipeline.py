"""The whole pipeline on the tiny configuration: every artefact exists and parses."""

import json
import re
import sqlite3

import optuna
import pytest
from PIL import Image

from carve.run import STEPS, RunState

from .conftest import screenshot


def png_ok(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] > 200 and im.size[1] > 100
    return True


def check_zoo(state):
    s = state.summary("zoo")
    rows = json.loads((state.root / "zoo" / "zoo.json").read_text())
    assert {r["name"] for r in rows} >= {"mobilenet_v3_large_100", "mobilenet_v3_small_100"}
    assert all(r["latency_ms"] > 0 and r["params_m"] > 0 and r["macs_m"] > 0 for r in rows)
    ref = next(r for r in rows if r["name"] == s["reference"])
    assert s["budget_ms"] == pytest.approx(ref["latency_ms"], rel=1e-3)
    assert s["hand_designed"] in {r["name"] for r in rows}
    assert png_ok(state.root / s["chart"])


def check_search(state):
    s = state.summary("search")
    with sqlite3.connect(state.root / s["storage"]) as db:
        n = db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    assert n == 2
    # the zoo's carve model within the budget is the supernet search's first trial (its nearest sub-network)
    assert s["warm_start"] == ["carve_100"]
    study = optuna.load_study(study_name=s["study"], storage=f"sqlite:///{state.root / s['storage']}")
    first = min(study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert first.system_attrs.get("fixed_params") and first.params == first.system_attrs["fixed_params"]
    assert s["best"]["spec"] and s["best"]["latency_ms"] > 0
    assert png_ok(state.root / s["chart"])


def check_train(state):
    s = state.summary("train")
    assert set(s["models"]) == {"found", "hand_designed"}
    for m in s["models"].values():
        assert 0.0 <= m["top1"] <= 100.0 and m["latency_ms"] > 0
        assert (state.root / m["weights"]).is_file()
    assert png_ok(state.root / s["chart"])


def check_finetune(state):
    s = state.summary("finetune")
    assert s["seeds"] == [0, 1]  # tiny: two seeds per backbone, the mean reported
    for role, m in s["models"].items():
        assert 0.0 <= m["AP"] <= 1.0 and 0.0 <= m["AP50"] <= 1.0
        assert m["AP50"] == pytest.approx(sum(m["per_seed"]["AP50"]) / 2) and m["AP50_std"] >= 0.0
        assert (state.root / "finetune" / f"{role}_seed1" / "last.pt").is_file()
        assert png_ok(state.root / m["examples"])
    assert 0.0 <= s["prior"]["AP"] <= s["prior"]["AP50"] <= 1.0  # the no-image floor beside them


def check_compress(state):
    s = state.summary("compress")
    assert (state.root / s["deployable"]).stat().st_size > 1000
    assert len(s["rows"]) >= 2
    assert png_ok(state.root / s["chart"])


def check_report(state):
    page = (state.root / "report" / "report.html").read_text()
    md = (state.root / "report" / "report.md").read_text()
    # self-contained: every image is inline and nothing is fetched from elsewhere
    assert re.findall(r'(?:src|href)="(?!data:)([^"]*)"', page) == []
    assert page.count('src="data:image/png;base64,') >= 1
    for title in ("1. Zoo", "2. Search", "3. Train", "4. Finetune", "5. Compress"):
        assert f"<h2>{title}" in page and f"## {title}" in md
    assert state.summary("zoo")["hand_designed"] in page
    assert "no-image prior" in md and "a detector that sees no image" in md
    assert "nearest sub-networks to carve_100" in md


CHECKS = {"zoo": check_zoo, "search": check_search, "train": check_train, "finetune": check_finetune,
          "compress": check_compress, "report": check_report}


@pytest.mark.parametrize("step", STEPS)
def test_tiny_run_artefacts(tiny_run, step):
    state = RunState(tiny_run.root)
    assert state.is_done(step), tiny_run.failed.get(step)
    CHECKS[step](state)


def test_tiny_run_report_renders_in_chromium(tiny_run, chromium, tmp_path):
    page = tiny_run.root / "report" / "report.html"
    png = tiny_run.root / "report" / "screenshot.png"
    console = screenshot(chromium, page, png, tmp_path / "profile")
    assert console == []
    assert png_ok(png)


def test_rerun_skips_finished_steps(tiny_run):
    from carve.run import load_config, run_pipeline

    before = {s: (tiny_run.root / s / "done.json").read_text() for s in STEPS[:-1]
              if (tiny_run.root / s / "done.json").is_file()}
    again = run_pipeline(load_config(tiny=True), tiny_run.root)
    assert set(again.skipped) == set(before) and again.ran == ["report"]
    assert before == {s: (tiny_run.root / s / "done.json").read_text() for s in before}
