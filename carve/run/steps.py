"""The run's steps in order: ``step(cfg, state) -> summary dict`` (JSON-serialisable), and what each needs.

Each step writes its files under ``state.step_dir(step)`` and reads earlier steps only through
their summaries, so any step can be re-run alone on a finished run folder.
"""

from __future__ import annotations

from typing import Callable

from .compress_step import run_compress
from .config import RunConfig
from .finetune_step import run_finetune
from .search_step import run_search
from .state import RunState
from .train_step import run_train
from .zoo_step import run_zoo


def run_report(cfg: RunConfig, state: RunState) -> dict:
    """One self-contained HTML page and a Markdown file from every finished step."""
    from .report import build_report

    html, md = build_report(cfg, state)
    return dict(html=str(html.relative_to(state.root)), markdown=str(md.relative_to(state.root)))


STEP_FUNCTIONS: dict[str, Callable[[RunConfig, RunState], dict]] = {
    "zoo": run_zoo, "search": run_search, "train": run_train, "finetune": run_finetune,
    "compress": run_compress, "report": run_report}
DEPENDS = {"zoo": (), "search": ("zoo",), "train": ("zoo", "search"), "finetune": ("train",),
           "compress": ("zoo", "train"), "report": ()}
