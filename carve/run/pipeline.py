"""``run_pipeline``: the steps in order, skipping finished ones, with progress on stderr."""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .config import ConfigError, RunConfig, dump_config
from carve.files import write_atomic

from .state import STEPS, RunState
from .steps import DEPENDS, STEP_FUNCTIONS


@dataclass
class RunOutcome:
    root: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _log(message: str) -> None:
    print(f"[carve run] {message}", file=sys.stderr, flush=True)


def run_pipeline(cfg: RunConfig, out: str | Path | None = None, steps: list[str] | None = None,
                 log: Callable[[str], None] = _log) -> RunOutcome:
    """Run ``steps`` (default: all) of ``cfg`` in the run folder ``out`` (default runs/<cfg.name>).

    A step whose done marker exists is skipped, unless its config section changed since (then it
    is an error: use a new run folder). A failing step is recorded and the steps that depend on it
    are not attempted; the report step always runs and shows what is missing and why.
    """
    t_start = time.perf_counter()
    state = RunState(out if out is not None else Path("runs") / cfg.name)
    outcome = RunOutcome(root=state.root)
    write_atomic(state.root / "config.yaml", dump_config(cfg))
    selected = list(steps) if steps is not None else list(STEPS)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        _run_steps(cfg, state, selected, outcome, log)
    finally:
        torch.set_num_threads(old_threads)
    outcome.wall_s = time.perf_counter() - t_start
    status = "finished" if outcome.ok else f"finished with {len(outcome.failed)} step(s) not done"
    log(f"{status} in {outcome.wall_s:.1f} s; run folder {state.root}")
    return outcome


def _run_steps(cfg: RunConfig, state: RunState, selected: list[str], outcome: RunOutcome,
               log: Callable[[str], None]) -> None:
    for i, step in enumerate(selected, 1):
        head = f"step {i}/{len(selected)} {step}"
        section_hash = cfg.section_hash(step)
        if state.is_done(step) and step != "report":
            if state.record(step)["config_hash"] != section_hash:
                raise ConfigError(step, f"the config section {step!r} (or data/seed) changed since this step "
                                        f"finished in {state.root}; use a new --out folder or delete "
                                        f"{state.root / step}")
            log(f"{head}: already done, skipped")
            outcome.skipped.append(step)
            continue
        blocked = [d for d in DEPENDS[step] if not state.is_done(d)]
        if blocked:
            reason = f"needs step {blocked[0]!r}, which has not finished in {state.root}"
            log(f"{head}: not run: {reason}")
            outcome.failed[step] = reason
            state.write_failure(step, reason)
            continue
        log(f"{head}: {STEP_FUNCTIONS[step].__doc__.splitlines()[0]}")
        t0 = time.perf_counter()
        state.clear_failure(step)
        try:
            summary = STEP_FUNCTIONS[step](cfg, state)
        except Exception as exc:  # recorded in the run folder and the report; later steps go on
            message = f"{type(exc).__name__}: {exc}"
            log(f"{head}: FAILED: {message}")
            outcome.failed[step] = message
            state.write_failure(step, message, traceback.format_exc())
            continue
        wall = time.perf_counter() - t0
        state.mark_done(step, summary, section_hash, wall)
        outcome.ran.append(step)
        log(f"{head}: done in {wall:.1f} s")
