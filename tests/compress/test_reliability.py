"""``carve compress`` checks that it can write its output folder before any work."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import traceback
from pathlib import Path

import pytest

from carve.cli import main

NOBODY = 65534


def _main_unprivileged(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` and its stderr; as root (which may write anywhere) in a forked child running
    as the unprivileged user ``nobody``, with what the command imports imported beforehand (nobody
    may not be able to read this interpreter's files)."""
    if os.geteuid() != 0:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            return main(argv), err.getvalue()
    import carve.compress  # noqa: F401
    from carve.cli import build_parser

    build_parser()  # imports every command module
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, report through the pipe
        os.close(read)
        err = io.StringIO()
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with contextlib.redirect_stderr(err):
                rc = main(argv)
            os.write(write, f"{rc}\n{err.getvalue()}".encode())
        except BaseException:
            os.write(write, f"-1\n{traceback.format_exc()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and text, text
    rc, _, err = text.partition("\n")
    return int(rc), err


@pytest.fixture
def read_only_folder() -> Path:
    """A folder nobody but root may write to, on a path every user may traverse."""
    base = Path(tempfile.mkdtemp(prefix="carve-ro-", dir="/tmp"))
    base.chmod(0o755)
    folder = base / "out"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(base)


def test_a_read_only_output_folder_is_refused_before_any_work(read_only_folder: Path) -> None:
    # the eval data does not exist either: the folder must be checked first, before anything is read
    rc, err = _main_unprivileged(["compress", "mobilenet_v2_100", "--fold-bn", "--no-latency", "--out-dir",
                                  str(read_only_folder), "--eval", "/nonexistent/cifar10"])
    assert rc == 2
    assert f"out_dir: cannot write to the folder {read_only_folder}" in err and "/nonexistent" not in err


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "report.md"
    target.write_text("an earlier report")
    rc = main(["compress", "mobilenet_v2_100", "--fold-bn", "--no-latency", "--out-dir", str(target), "--eval",
               "/nonexistent/cifar10"])
    assert rc == 2 and f"out_dir: {target} is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "an earlier report"
