import shutil
import subprocess
from pathlib import Path

import pytest

from carve.run import load_config, run_pipeline

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--window-size=1100,6400"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole pipeline on the tiny configuration, once per test session."""
    root = tmp_path_factory.mktemp("tiny-run")
    outcome = run_pipeline(load_config(tiny=True), root)
    return outcome


def find_chromium() -> str | None:
    """Chromium on the PATH (tests install nothing: `.ci/run` installs it with apt-get)."""
    return next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


@pytest.fixture(scope="session")
def chromium():
    path = find_chromium()
    if path is None:
        pytest.skip("headless Chromium not on the PATH (`apt-get install chromium`; .ci/run installs it)")
    return path


def screenshot(chromium: str, page: Path, png: Path, profile: Path) -> list[str]:
    """Open ``page`` headless, write a screenshot, return the console messages Chromium logged."""
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert png.is_file(), f"no screenshot written; chromium said:\n{proc.stderr[-2000:]}"
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
