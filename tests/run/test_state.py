import json

import pytest

from carve.run import RunState, load_config, run_pipeline
from carve.files import write_atomic
from carve.run.zoo_step import strongest_under_budget, zoo_names


def test_write_atomic_leaves_no_temp_files(tmp_path):
    write_atomic(tmp_path / "a.json", "1")
    write_atomic(tmp_path / "a.json", "2")
    assert (tmp_path / "a.json").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_summary_of_unfinished_step_says_how_to_run_it(tmp_path):
    state = RunState(tmp_path)
    with pytest.raises(RuntimeError, match="--steps search"):
        state.summary("search")
    state.mark_done("zoo", {"budget_ms": 3.0}, "h", 1.0)
    assert state.is_done("zoo") and state.summary("zoo") == {"budget_ms": 3.0}


def _fake_zoo(calls):
    def step(cfg, state):
        calls.append("zoo")
        (state.step_dir("zoo") / "x.txt").write_text("x")
        return {"n": len(calls)}
    step.__doc__ = "fake zoo"
    return step


def test_finished_steps_are_skipped_and_config_changes_refused(tmp_path, monkeypatch):
    from carve.run import steps

    calls = []
    monkeypatch.setitem(steps.STEP_FUNCTIONS, "zoo", _fake_zoo(calls))
    cfg = load_config(tiny=True)
    first = run_pipeline(cfg, tmp_path, ["zoo"], log=lambda m: None)
    second = run_pipeline(cfg, tmp_path, ["zoo"], log=lambda m: None)
    assert calls == ["zoo"] and first.ran == ["zoo"] and second.skipped == ["zoo"]
    assert json.loads((tmp_path / "zoo" / "done.json").read_text())["summary"] == {"n": 1}
    changed = load_config(tiny=True, overrides={"zoo": {"input_size": 64}})
    with pytest.raises(ValueError, match="zoo: the config section 'zoo'"):
        run_pipeline(changed, tmp_path, ["zoo"], log=lambda m: None)


def test_step_with_unfinished_dependency_is_not_attempted(tmp_path):
    outcome = run_pipeline(load_config(tiny=True), tmp_path, ["train", "report"], log=lambda m: None)
    assert "train" in outcome.failed and "needs step 'zoo'" in outcome.failed["train"]
    assert outcome.ran == ["report"]
    assert "needs step" in (tmp_path / "report" / "report.md").read_text()


def test_strongest_under_budget_prefers_published_accuracy():
    rows = [dict(name="a", family="f", latency_ms=1.0, macs_m=10, imagenet_top1=60.0),
            dict(name="b", family="f", latency_ms=2.0, macs_m=50, imagenet_top1=70.0),
            dict(name="ref", family="f", latency_ms=3.01, macs_m=60, imagenet_top1=72.0),
            dict(name="c", family="f", latency_ms=9.0, macs_m=90, imagenet_top1=80.0),
            dict(name="carve_100", family="carve", latency_ms=1.5, macs_m=99, imagenet_top1=None)]
    assert strongest_under_budget(rows, 3.0, "ref")["name"] == "ref"
    assert strongest_under_budget(rows, 3.0, "a")["name"] == "b"


def test_zoo_names_take_several_globs_and_always_the_reference():
    names = zoo_names("mobilenet_v3_small_*, carve_100", "shufflenet_v2_100")
    assert names == ["carve_100", "mobilenet_v3_small_075", "mobilenet_v3_small_100", "shufflenet_v2_100"]
    assert zoo_names("carve_*", "carve_100") == ["carve_075", "carve_100", "carve_125"]
    with pytest.raises(ValueError, match=r"zoo.models: no zoo model matches 'nothing_\*'"):
        zoo_names("nothing_*", "carve_100")
