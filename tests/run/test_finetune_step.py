"""The run's finetune step: each backbone's detection figures are the mean over its seeds."""

import pytest

from carve.config import ConfigError
from carve.run.config import FinetuneSection
from carve.run.finetune_step import seed_summary


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

