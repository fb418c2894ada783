from carve.latency.comparison import MIN_ROUNDS, interleave
from carve.latency.protocol import Protocol


def _recorder(name: str, calls: list[str], ms: float):
    def timed() -> float:
        calls.append(name)
        return ms
    return timed


def test_rounds_alternate_their_order_and_last_at_least_min_rounds():
    calls: list[str] = []
    samples = interleave([_recorder("a", calls, 1.0), _recorder("b", calls, 2.0)], Protocol(min_runs=2), block=3)
    rounds = [calls[i:i + 6] for i in range(0, len(calls), 6)]
    assert len(rounds) == MIN_ROUNDS  # constant timings are stable at once; the rounds' floor holds
    assert rounds[0] == ["a"] * 3 + ["b"] * 3 and rounds[1] == ["b"] * 3 + ["a"] * 3
    assert all(r == rounds[i % 2] for i, r in enumerate(rounds))
    assert [len(s) for s in samples] == [3 * MIN_ROUNDS] * 2


def test_unstable_timings_run_to_max_runs():
    values = iter(range(1, 10**6))
    noisy = lambda: float(next(values) % 7 + 1)  # noqa: E731  (spread far beyond a 1 % CI)
    samples = interleave([noisy, noisy], Protocol(min_runs=10, max_runs=60, max_time_s=60), block=5)
    assert [len(s) for s in samples] == [60, 60]
