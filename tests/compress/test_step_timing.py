import pytest
from torch import nn

from carve.compress.step_timing import TimedModel, time_together


def _net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()


@pytest.mark.parametrize("runtime", ["eager", "onnxruntime"])
def test_models_timed_together_come_back_in_order_and_rank_by_work(runtime):
    small, big = _net(4), _net(96)  # about 500x the MACs in the second conv
    timings = time_together([TimedModel(small, runtime), TimedModel(big, runtime)], input_size=48, in_channels=3,
                            threads=1)
    assert len(timings) == 2 and all(t.runs >= 5 and t.p10_ms <= t.median_ms <= t.p90_ms for t in timings)
    assert timings[0].median_ms < timings[1].median_ms


def test_nothing_to_time_is_an_error():
    with pytest.raises(ValueError, match="models"):
        time_together([], input_size=32, in_channels=3)
