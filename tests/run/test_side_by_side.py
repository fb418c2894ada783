"""Jobs side by side: one torch thread each, the same results however many run at once."""

import os
import time

import pytest
import torch

from carve.run.side_by_side import one_thread_each


def train_a_little(seed: int) -> dict:
    """A few SGD steps of a small convolutional network: the weights, and where and on how many threads."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return dict(weights=[p.detach().clone() for p in model.parameters()], pid=os.getpid(),
                threads=torch.get_num_threads())


def fail_on_two(seed: int) -> int:
    if seed == 2:
        raise ValueError("seed 2 is bad")
    return seed * 10


def started_at(seconds: float) -> float:
    """When the call started (wall clock, comparable across processes); then it sleeps ``seconds``."""
    start = time.time()
    time.sleep(seconds)
    return start


def test_the_costliest_calls_start_first_and_results_keep_their_order():
    items = [0.3, 0.3, 0.6, 0.6]
    starts = one_thread_each(started_at, items, jobs=2, cost=items)
    assert max(starts[2], starts[3]) < min(starts[0], starts[1])  # without cost, 0 and 1 would start first
    with pytest.raises(ValueError, match=r"cost: expected one per item \(4\), got 1"):
        one_thread_each(started_at, items, jobs=2, cost=[1.0])


def test_side_by_side_calls_run_on_one_thread_each_in_worker_processes_with_the_same_results():
    seeds = [0, 1, 2]
    finished = []
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        alone = one_thread_each(train_a_little, seeds, jobs=1)
        assert torch.get_num_threads() == 2  # restored after the in-process calls
    finally:
        torch.set_num_threads(threads)
    together = one_thread_each(train_a_little, seeds, jobs=2, on_done=lambda i, r: finished.append(i))
    assert sorted(finished) == [0, 1, 2]
    assert all(r["threads"] == 1 for r in alone + together)
    assert {r["pid"] for r in alone} == {os.getpid()} and os.getpid() not in {r["pid"] for r in together}
    for a, b in zip(alone, together):
        assert all(torch.equal(p, q) for p, q in zip(a["weights"], b["weights"]))
    assert not torch.equal(alone[0]["weights"][0], alone[1]["weights"][0])  # the seeds differ


def test_a_failing_call_is_raised_after_the_others_finish():
    finished = []
    with pytest.raises(ValueError, match="seed 2 is bad"):
        one_thread_each(fail_on_two, [0, 1, 2], jobs=3, on_done=lambda i, r: finished.append((i, r)))
    assert sorted(finished) == [(0, 0), (1, 10)]
    with pytest.raises(ValueError, match="seed 2 is bad"):
        one_thread_each(fail_on_two, [2, 0], jobs=1)
