"""The run folder: one sub-folder per step, a done marker per finished step, atomic writes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from carve.files import write_json

STEPS = ("zoo", "search", "train", "finetune", "compress", "report")


def parse_steps(text: str | None) -> list[str]:
    """``"zoo,search"`` -> ["zoo", "search"] in pipeline order; None or "all" -> every step."""
    if text is None or text.strip() in ("", "all"):
        return list(STEPS)
    asked = [s.strip() for s in text.split(",") if s.strip()]
    for s in asked:
        if s not in STEPS:
            raise ValueError(f"--steps: unknown step {s!r}; steps are {', '.join(STEPS)}")
    return [s for s in STEPS if s in asked]


class RunState:
    """``root/<step>/`` holds each step's files; ``root/<step>/done.json`` marks it finished and
    holds its summary (the numbers later steps and the report read)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._unreadable: set[Path] = set()

    def step_dir(self, step: str) -> Path:
        path = self.root / step
        path.mkdir(parents=True, exist_ok=True)
        return path

    def marker(self, step: str) -> Path:
        return self.root / step / "done.json"

    def is_done(self, step: str) -> bool:
        """True when the step's done marker exists and is readable; an unreadable one (a truncated
        file) counts as not done, and says so once: the step runs again."""
        return self._read_marker(step) is not None

    def summary(self, step: str) -> dict:
        """The summary of a finished step; a clear error if it has not run in this folder."""
        return self.record(step)["summary"]

    def record(self, step: str) -> dict:
        record = self._read_marker(step)
        if record is None:
            raise RuntimeError(f"step {step!r} has not finished in {self.root}; run it first "
                               f"(carve run --out {self.root} --steps {step})")
        return record

    def _read_marker(self, step: str) -> dict | None:
        path = self.marker(step)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or not isinstance(record.get("summary"), dict):
                raise ValueError("no summary in it")
        except ValueError as exc:
            if path not in self._unreadable:
                self._unreadable.add(path)
                print(f"[carve run] {path}: unreadable done marker ({exc}); step {step!r} counts as not done "
                      f"(it runs again when asked for)", file=sys.stderr, flush=True)
            return None
        return record

    def mark_done(self, step: str, summary: dict, config_hash: str, wall_s: float) -> None:
        write_json(self.marker(step), {"step": step, "config_hash": config_hash, "wall_s": round(wall_s, 2),
                                       "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "summary": summary})

    def write_failure(self, step: str, message: str, trace: str | None = None) -> None:
        write_json(self.root / step / "failed.json", {"step": step, "error": message, "traceback": trace,
                                                        "when": time.strftime("%Y-%m-%d %H:%M:%S")})

    def failure(self, step: str) -> str | None:
        path = self.root / step / "failed.json"
        return json.loads(path.read_text())["error"] if path.is_file() else None

    def clear_failure(self, step: str) -> None:
        (self.root / step / "failed.json").unlink(missing_ok=True)


def rel(state: RunState, path: str | Path | None) -> str | None:
    """``path`` relative to the run folder (summaries stay valid when the folder moves)."""
    if path is None:
        return None
    path = Path(path).resolve()
    try:
        return path.relative_to(state.root.resolve()).as_posix()
    except ValueError:
        return str(path)
