"""The INT8 speed-first gate leaves room for variants with blocks in FP32 to be faster."""

import pytest
from torch import nn

from carve.compress.step_gates import pair_pays
from carve.compress.step_timing import Timing


def timer(before_ms: float, after_ms: float):
    def time(models):
        assert len(models) == 2
        return [Timing(before_ms, before_ms, before_ms, 10), Timing(after_ms, after_ms, after_ms, 10)]
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
