"""Files: atomic writes (a crash or kill leaves the old file or the new one, never half of one), UTF-8
reads that name the file, and output folders checked before any work."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


CACHE_ENV = "CARVE_CACHE_DIR"


def cache_dir() -> Path:
    """carve's cache folder: $CARVE_CACHE_DIR, else $XDG_CACHE_HOME/carve, else ~/.cache/carve."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "carve"


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """A matplotlib figure saved as PNG atomically, then closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return write_atomic(path, buf.getvalue())


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON (non-JSON values as their ``str``), written atomically."""
    return write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``path``; a ``ValueError`` naming the file and the offending byte when it is not UTF-8."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, "
                         f"line {line})") from None


def writable_dir(path: str | Path, what: str = "out_dir") -> Path:
    """``path`` as a folder this process can write to (created when missing), checked before any work.

    A path that is (or lies under) a file raises ``NotADirectoryError``; a folder that cannot be
    created or written to raises ``PermissionError``; both name ``what`` and the path.
    """
    path = Path(path)
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                where = "is" if ancestor == path else f"lies under {ancestor}, which is"
                raise NotADirectoryError(f"{what}: {path} {where} a file, not a folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".carve-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"{what}: cannot write to the folder {path} ({exc.strerror or exc})") from None
    return path


RUN_FILES = ("last.pt", "best.pt")


def claim_run_dir(path: str | Path, resume: bool | str | Path = False, overwrite: bool = False,
                  run_files: tuple[str, ...] = RUN_FILES, what: str = "out_dir") -> Path:
    """The output folder of a training run: writable, and never holding another run it would replace.

    A folder holding one of ``run_files`` is refused (``FileExistsError``) unless the run resumes
    from it (``resume`` True, or a checkpoint inside it) or ``overwrite`` is set.
    """
    path = writable_dir(path, what)
    resumes_here = resume is True or (bool(resume) and Path(resume).resolve().parent == path.resolve())
    if resumes_here or overwrite:
        return path
    found = [name for name in run_files if (path / name).exists()]
    if found:
        raise FileExistsError(f"{what}: {path} already holds a run ({', '.join(found)}); carve does not overwrite "
                              f"it. Continue it with resume (--resume), replace it with overwrite (--overwrite), "
                              f"or choose another output folder")
    return path
