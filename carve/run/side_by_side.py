"""Independent jobs run side by side, each in its own process on one torch thread.

Small convolutional networks use two threads poorly: on the 2-core development machine one raccoon
finetune took 62 s on two threads and 79 s on one, and two single-thread finetunes side by side took
82 s for both (docs/run.md). One thread per job also makes a job's figures independent of the
machine's core count and of how many jobs run at once; the thread count changes a finetune's
floating-point reductions, and so its trained weights.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

PR_SET_PDEATHSIG = 1


def worker_count(jobs: int | None, items: int) -> int:
    """How many of ``items`` calls ``one_thread_each`` runs at once: ``jobs``, by default one per CPU
    this process may use, never more than there are calls; 1 means in this process."""
    from carve.latency.fingerprint import allowed_cpus

    return max(1, min(jobs or len(allowed_cpus()), items))


def _start_worker(parent: int) -> None:
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):  # a worker dies with the run, so a killed run leaves no job writing
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the run died before the line above
        os._exit(1)


def one_thread_each(fn: Callable[[T], R], items: Sequence[T], jobs: int | None = None,
                    on_done: Callable[[int, R], None] | None = None,
                    cost: Sequence[float] | None = None) -> list[R]:
    """``[fn(item) for item in items]``, each call on one torch thread, up to ``jobs`` at once.

    ``jobs``: see ``worker_count``. With one job (or one item) the calls run in this
    process, one after another; otherwise each runs in a spawned worker process, so ``fn`` must be
    importable and ``items`` and results picklable. ``on_done(index, result)`` is called here as each
    call finishes. If a call fails, the calls already running finish (their work is kept), those not
    started are cancelled, and the first failure is raised. ``cost``: each call's expected cost (any
    unit); with several jobs the costliest start first, so that short calls fill the end and the
    workers finish together (results stay in input order).
    """
    if cost is not None and len(cost) != len(items):
        raise ValueError(f"cost: expected one per item ({len(items)}), got {len(cost)}")
    jobs = worker_count(jobs, len(items))
    if jobs == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            in_order = []
            for i, item in enumerate(items):
                in_order.append(fn(item))
                if on_done is not None:
                    on_done(i, in_order[-1])
            return in_order
        finally:
            torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
        order = range(len(items)) if cost is None else sorted(range(len(items)), key=lambda i: -cost[i])
        futures = {pool.submit(fn, items[i]): i for i in order}
        results: dict[int, R] = {}
        failure: BaseException | None = None
        for future in as_completed(futures):
            if future.cancelled():
                continue
            if future.exception() is not None:
                if failure is None:
                    failure = future.exception()
                    for other in futures:
                        other.cancel()
                continue
            results[futures[future]] = future.result()
            if on_done is not None:
                on_done(futures[future], results[futures[future]])
    if failure is not None:
        raise failure
    return [results[i] for i in range(len(items))]
