"""The speed gates: the INT8 speed-first gate leaves room for variants with blocks in FP32 to be
faster, and a reading near a threshold is timed again before it decides."""

import pytest
from torch import nn

from carve.compress.step_gates import GATE_MARGIN, GATE_WINDOWS, decisive_pair, pair_pays
from carve.compress.step_timing import Timing


def _pair(before_ms: float, after_ms: float) -> list[Timing]:
    return [Timing(before_ms, before_ms, before_ms, 10), Timing(after_ms, after_ms, after_ms, 10, after_ms / before_ms)]


def timer(before_ms: float, after_ms: float):
    def time(models):
        assert len(models) == 2
        return _pair(before_ms, after_ms)
    return time


def scripted(*speedups: float):
    """A ``time`` whose successive windows read these speed-ups (before 1.0 ms); counts its calls."""
    readings = iter(speedups)

    def time(models):
        time.calls += 1
        return _pair(1.0, 1.0 / next(readings))
    time.calls = 0
    return time


# before 1.2 ms, gate 1.05x: 1.0 ms (1.20x) pays; 1.25 ms (0.96x) does not, but a variant 1.25x faster
# would (1.20x), so accuracy control must still run; 1.5 ms (0.80x, 1.00x with the slack) cannot pay
@pytest.mark.parametrize("after_ms, could_pay", [(1.0, True), (1.25, True), (1.5, False), (2.0, False)])
def test_full_int8_is_skipped_only_when_fp32_blocks_could_not_make_it_pay(after_ms, could_pay):
    pair: list[Timing] = []
    assert pair_pays(timer(1.2, after_ms), nn.Identity(), 1.05, pair, nn.Identity()) is could_pay
    assert [t.median_ms for t in pair] == [1.2, after_ms]  # left for the pipeline's gate to report


def test_without_slack_the_fully_quantized_model_must_pay_itself():
    assert not pair_pays(timer(1.2, 1.25), nn.Identity(), 1.05, [], nn.Identity(), slack=1.0)


def test_a_reading_far_from_the_threshold_decides_in_one_window():
    time = scripted(1.41, 2.0)
    before, after = decisive_pair(time, nn.Identity(), nn.Identity(), threshold=1.05)
    assert time.calls == 1 and after.windows == 1
    assert after.speedup_over(before) == pytest.approx(1.41)


def test_a_reading_near_the_threshold_is_timed_again_and_the_median_window_decides():
    # 1.06x would pass a 1.05x gate by chance; the next two windows say it does not pay
    time = scripted(1.06, 0.98, 1.01, 5.0)
    before, after = decisive_pair(time, nn.Identity(), nn.Identity(), threshold=1.05)
    assert time.calls == GATE_WINDOWS and after.windows == GATE_WINDOWS and after.runs == 10 * GATE_WINDOWS
    assert after.speedup_over(before) == pytest.approx(1.01, abs=1e-3)


def test_a_second_window_that_leaves_the_margin_ends_the_timing():
    time = scripted(1.03, 1.30, 1.0)  # pooled over two windows: 1.15x, clear of the 1.05 margin
    before, after = decisive_pair(time, nn.Identity(), nn.Identity(), threshold=1.05)
    assert time.calls == 2 and after.windows == 2
    pooled_speedup = 2 / (1 / 1.03 + 1 / 1.30)  # the median of two time ratios is their mean
    assert after.speedup_over(before) == pytest.approx(pooled_speedup) and pooled_speedup / 1.05 - 1 > GATE_MARGIN
