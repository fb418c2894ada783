import statistics

import pytest

from carve.latency.protocol import block_ratios, paired_ratio


def _rounds(a_ms: list[float], b_ms: list[float], block: int) -> tuple[list[float], list[float]]:
    """Samples of two interleaved models, one block per round, each round's calls at that round's time."""
    return [v for v in a_ms for _ in range(block)], [v for v in b_ms for _ in range(block)]


def test_a_slow_spell_that_ends_between_two_blocks_biases_the_medians_not_the_paired_ratio():
    # B takes twice A's time; a spell triples both, and ends after A's block of round 5, before B's
    a, b = _rounds([3.0] * 6 + [1.0] * 4, [6.0] * 5 + [2.0] * 5, block=4)
    assert statistics.median(b) / statistics.median(a) == pytest.approx(4.0 / 3.0)  # medians 4.0 and 3.0
    ratio, ci = paired_ratio(b, a, block=4)
    assert ratio == pytest.approx(2.0)
    assert block_ratios(b, a, block=4)[5] == pytest.approx(2.0 / 3.0)  # the one round the spell split
    assert ci >= 0


def test_ratios_use_each_blocks_median_and_only_whole_rounds():
    a = [1.0, 1.0, 9.0, 2.0, 2.0, 2.0, 5.0]  # one outlier call in round 0; a partial third round
    b = [3.0, 3.0, 3.0, 4.0, 4.0, 4.0]
    assert block_ratios(b, a, block=3) == pytest.approx([3.0, 2.0])


def test_the_ci_narrows_as_consistent_rounds_accumulate():
    noisy = [2.0 * (1 + 0.05 * ((i * 7) % 5 - 2)) for i in range(40)]  # ratios 1.8 .. 2.2, repeating
    few, many = (paired_ratio(noisy[:n], [1.0] * n, block=1)[1] for n in (10, 40))
    assert many < few


@pytest.mark.parametrize("block", [0, -1])
def test_a_block_below_one_is_an_error(block):
    with pytest.raises(ValueError, match="block"):
        block_ratios([1.0], [1.0], block)


def test_no_whole_round_is_an_error():
    with pytest.raises(ValueError, match="at least one full round"):
        paired_ratio([1.0], [1.0, 1.0], block=2)
