"""Run the carve CLI and SIGKILL the whole process right after a chosen call returns.

``python -m tests.run.kill_after MODULE:ATTR MATCH N -- ARGS...`` runs ``carve ARGS...`` and kills
itself with SIGKILL (no clean-up, as ``kill -9`` or a power cut) once ``MODULE.ATTR`` has returned
N times from calls whose str/path/list arguments contain MATCH (e.g. a checkpoint path).
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
from typing import Any, Callable


def _described(args: tuple, kwargs: dict) -> str:
    return " ".join(str(a) for a in (*args, *kwargs.values()) if isinstance(a, (str, os.PathLike, list, tuple)))


def kill_after(target: str, match: str, n: int) -> None:
    """Patch ``MODULE:ATTR`` so that its n-th matching call SIGKILLs the process once it has returned."""
    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    real: Callable = getattr(module, attr)
    calls = [0]

    @functools.wraps(real)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if match in _described(args, kwargs):
            calls[0] += 1
            if calls[0] == n:
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(module, attr, wrapper)


if __name__ == "__main__":
    target, match, count, sep, *cli_args = sys.argv[1:]
    assert sep == "--", "usage: kill_after MODULE:ATTR MATCH N -- ARGS..."
    kill_after(target, match, int(count))
    from carve.cli import main

    sys.exit(main(cli_args))
