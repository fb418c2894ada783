import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from carve.search import export_spec, run_search
from carve.search.storage import load_study
from carve.search.objective import Objective
from carve.search.spaces import get_space
from carve.search.study import optimize
from carve.zoo import create_model

from .conftest import fast_objective, tiny_config

REPO = Path(__file__).resolve().parents[2]


def test_search_records_specs_constraints_and_pareto(tiny_space, tmp_path):
    space = get_space(tiny_space)
    sizes = sorted(Objective(fast_objective()).cost(space.sample_random(s)[0], 32)["params"] for s in range(20))
    budget = sizes[len(sizes) // 2]  # about half of the space is over this params budget
    cfg = tiny_config(tiny_space, tmp_path, trials=8, params_budget=budget, sampler="tpe")
    result = run_search(cfg)
    assert result.n_complete == 8 and result.n_failed == 0
    study = load_study(cfg.name, cfg.storage_url)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    over = [t for t in trials if t.user_attrs["params"] > budget]
    under = [t for t in trials if t.user_attrs["params"] <= budget]
    assert over and under
    for t in trials:  # Optuna's own constraint record: value - budget, <= 0 feasible
        assert t.system_attrs["constraints:params"] == pytest.approx(t.user_attrs["params"] - budget)
    for t in over:
        assert t.user_attrs["skipped"].startswith("over budget") and t.values[0] == 0.0
    assert result.pareto, "some feasible trial must be on the front"
    numbers = {t.number for t in under}
    for e in result.pareto:
        assert e.number in numbers and e.params <= budget
    # the front is non-dominated among feasible trials (accuracy = params here: maximise it)
    best = max(t.user_attrs["params"] for t in under)
    assert any(e.params == best for e in result.pareto)
    saved = json.loads((tmp_path / f"{cfg.name}-pareto.json").read_text())
    assert [p["number"] for p in saved["pareto"]] == [e.number for e in result.pareto]


def test_warm_start_architectures_are_the_first_trials(tiny_space, tmp_path):
    space = get_space(tiny_space)
    seeds = [space.sample_random(s)[0] for s in (11, 12)]
    for i, spec in enumerate(seeds):
        spec.save(tmp_path / f"seed{i}.json")
    cfg = tiny_config(tiny_space, tmp_path, trials=4, warm_start=(str(tmp_path / "seed0.json"),
                                                                  str(tmp_path / "seed1.json")))
    run_search(cfg)
    trials = load_study(cfg.name, cfg.storage_url).get_trials(states=(TrialState.COMPLETE,))
    assert [t.user_attrs["spec"] for t in trials[:2]] == [s.to_dict() for s in seeds]
    assert len(trials) == 4
    with pytest.raises(ValueError, match=r"warm_start\[0\]"):
        run_search(tiny_config(tiny_space, tmp_path / "bad", trials=1, warm_start=("no_such_model",)))


def test_export_round_trip(tiny_space, tmp_path):
    cfg = tiny_config(tiny_space, tmp_path, trials=3)
    run_search(cfg)
    study = load_study(cfg.name, cfg.storage_url)
    trial = study.trials[1]
    out = tmp_path / "arch.json"
    spec = export_spec(cfg.name, cfg.storage_url, trial=1, out=out)
    assert spec.to_dict() == trial.user_attrs["spec"]
    model = create_model(str(out))
    assert model.spec == spec
    assert get_space(tiny_space).decode(trial.params)[0] == spec  # params alone also rebuild it
    with pytest.raises(KeyError, match="trial 99"):
        export_spec(cfg.name, cfg.storage_url, trial=99)
    with pytest.raises(KeyError, match="nosuch"):
        export_spec("nosuch", cfg.storage_url)


def test_failed_trials_are_recorded_and_search_goes_on(tiny_space, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = Objective.accuracy

    def flaky(self, spec, name="trial", report=None):
        calls["n"] += 1
        if calls["n"] % 3 == 1:
            raise RuntimeError("out of memory (simulated)")
        if calls["n"] % 3 == 2:
            return float("nan")
        return real(self, spec, name, report)

    monkeypatch.setattr(Objective, "accuracy", flaky)
    cfg = tiny_config(tiny_space, tmp_path, trials=3)
    result = run_search(cfg)
    study = load_study(cfg.name, cfg.storage_url)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert result.n_complete == 3 and len(failed) == 6
    errors = sorted(t.user_attrs["error"] for t in failed)
    assert sum("out of memory" in e for e in errors) == 3
    assert sum("FloatingPointError" in e for e in errors) == 3


def test_same_seed_same_trials(tiny_space, tmp_path):
    params = []
    for run in ("a", "b"):
        cfg = tiny_config(tiny_space, tmp_path / run, trials=3, seed=7)
        run_search(cfg)
        params.append([t.params for t in load_study(cfg.name, cfg.storage_url).trials])
    assert params[0] == params[1]


def test_existing_study_needs_resume(tiny_space, tmp_path):
    cfg = tiny_config(tiny_space, tmp_path, trials=2)
    run_search(cfg)
    with pytest.raises(ValueError, match="--resume"):
        run_search(cfg)
    cfg.resume, cfg.trials = True, 3
    assert run_search(cfg).n_complete == 3


_WORKER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import tiny_config
    from carve.search.objective import Objective
    from carve.search.study import optimize
    real = Objective.accuracy
    calls = [0]
    def slow(self, spec, name="trial", report=None):
        calls[0] += 1
        if calls[0] == 4:
            open({marker!r}, "w").write("hanging")
            time.sleep(600)
        return real(self, spec, name, report)
    Objective.accuracy = slow
    optimize(tiny_config({space!r}, {out!r}, trials=10))
""")


def test_killed_worker_loses_no_finished_trial_and_workers_share_the_study(tiny_space, tmp_path):
    """Worker A (a process) hangs in its 4th trial; this process works on the same study meanwhile;
    then A is killed with SIGKILL and the study is resumed."""
    marker = tmp_path / "hanging"
    script = _WORKER.format(tests=str(Path(__file__).parent), marker=str(marker), space=tiny_space, out=str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.time() + 150
        while not marker.exists():
            assert proc.poll() is None, "worker died early"
            assert time.time() < deadline, "worker never reached trial 4"
            time.sleep(0.2)
        cfg = tiny_config(tiny_space, tmp_path, trials=5, resume=True)
        optimize(cfg, worker=1)  # a second worker while A's trial is still running
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = load_study(cfg.name, cfg.storage_url)
    finished = {t.number: t.values for t in before.get_trials(states=(TrialState.COMPLETE,))}
    assert len(finished) == 5
    assert before.trials[3].state == TrialState.RUNNING  # A's trial, orphaned by the kill
    assert len({t.user_attrs["worker"] for t in before.get_trials(states=(TrialState.COMPLETE,))}) == 2
    time.sleep(3.5)  # past the heartbeat grace period (3 x 1 s)
    cfg.trials = 6
    result = run_search(cfg)
    after = load_study(cfg.name, cfg.storage_url)
    kept = {t.number: t.values for t in after.get_trials(states=(TrialState.COMPLETE,))}
    assert all(kept[n] == v for n, v in finished.items())
    assert result.n_complete == 6
    assert after.trials[3].state == TrialState.FAIL  # the killed trial, marked stale
    assert sorted(t.number for t in after.trials) == list(range(len(after.trials)))


def test_resumed_study_does_not_replay_finished_architectures(tiny_space, tmp_path):
    cfg = tiny_config(tiny_space, tmp_path, trials=2)
    run_search(cfg)
    from dataclasses import replace

    run_search(replace(cfg, trials=4, resume=True))
    study = load_study(cfg.name, cfg.storage_url)
    params = [tuple(sorted(t.params.items())) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(params) == 4
    assert params[2] != params[0] and params[3] != params[1]
