"""The run's finetune step: each backbone's detection figures are the mean over its seeds."""

import shutil
from dataclasses import replace

import pytest
import torch

from carve.config import ConfigError
from carve.run import RunState, load_config, run_pipeline
from carve.run.config import FinetuneSection
from carve.run.finetune_step import seed_summary
from carve.train.checkpoint import load_checkpoint


def test_seed_summary_is_the_mean_with_the_spread_of_each_seed():
    runs = [dict(AP=0.20, AP50=0.50, AP75=0.10, AP_small=None), dict(AP=0.30, AP50=0.70, AP75=0.20, AP_small=None)]
    s = seed_summary(runs)
    assert s["AP"] == pytest.approx(0.25) and s["AP50"] == pytest.approx(0.60) and s["AP75"] == pytest.approx(0.15)
    assert s["AP50_std"] == pytest.approx(0.1414, abs=1e-4) and s["AP_std"] == pytest.approx(0.0707, abs=1e-4)
    assert s["AP_small"] is None and s["per_seed"]["AP50"] == [0.50, 0.70]
    one = seed_summary(runs[:1])
    assert one["AP50"] == 0.50 and one["AP50_std"] == 0.0


def test_finetune_section_hands_the_stage_its_own_config():
    section = FinetuneSection(seeds=2, epochs=4, img_size=256)
    dc = section.detect_config()
    assert type(dc).__name__ == "DetectConfig" and not hasattr(dc, "seeds")
    assert (dc.epochs, dc.img_size) == (4, 256)
    with pytest.raises(ConfigError, match="seeds"):
        FinetuneSection(seeds=0).validate()


def test_finetunes_side_by_side_train_the_same_detectors_as_one_after_another(tiny_run, tmp_path, test_weights,
                                                                              monkeypatch, capfd):
    """The tiny run finetunes in this process (jobs: 1); its finetune step again with jobs 2, in worker
    processes, leaves every detector's weights bit for bit the same."""
    monkeypatch.setenv("CARVE_WEIGHTS_DIR", str(test_weights))
    again = tmp_path / "run"
    shutil.copytree(tiny_run.root, again)
    shutil.rmtree(again / "finetune")
    outcome = run_pipeline(replace(load_config(tiny=True), jobs=2), again, steps=["finetune"])
    assert outcome.ok and "side by side" in capfd.readouterr().err
    runs = sorted(p.name for p in (tiny_run.root / "finetune").iterdir() if (p / "last.pt").is_file())
    assert runs == ["found", "found_seed1", "hand_designed", "hand_designed_seed1"]
    for name in runs:
        first = load_checkpoint(tiny_run.root / "finetune" / name / "last.pt")["model"]
        second = load_checkpoint(again / "finetune" / name / "last.pt")["model"]
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    before = RunState(tiny_run.root).summary("finetune")["models"]
    assert RunState(again).summary("finetune")["models"]["found"]["per_seed"] == before["found"]["per_seed"]
