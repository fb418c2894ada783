import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from carve.run import load_config, run_pipeline

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--window-size=1100,6400"]


# the shipped weights the run starts from (search base, reference and the supernet), randomly initialised for the tests
SHIPPED = ("carve_100", "mobilenet_v3_large_100")


def publish_test_weights(folder: Path, tag: str = "carve:tiny-imagenet") -> Path:
    """A weights folder like carve/weights, holding randomly initialised 202-class models for ``tag``."""
    from carve.zoo import create_model
    from carve.zoo.shipped import publish

    from carve.zoo.supernet import SHIPPED_NAME, Supernet

    torch.manual_seed(0)
    for name in SHIPPED:
        publish(create_model(name, num_classes=202), name, tag,
                dict(dataset="tiny-imagenet-202", top1=0.5, top5=2.5, eval=dict(input_size=64, crop_pct=1.0)), folder)
    supernet = Supernet("carve_compact", num_classes=202)
    publish(supernet, SHIPPED_NAME, tag, dict(dataset="tiny-imagenet-202", space=supernet.space.to_dict(), top1=0.5,
                                              eval=dict(input_size=64, crop_pct=1.0)), folder)
    return folder


@pytest.fixture(scope="session")
def test_weights(tmp_path_factory) -> Path:
    return publish_test_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, test_weights):
    """The whole pipeline on the tiny configuration, once per test session."""
    root = tmp_path_factory.mktemp("tiny-run")
    old = os.environ.get("CARVE_WEIGHTS_DIR")
    os.environ["CARVE_WEIGHTS_DIR"] = str(test_weights)
    try:
        return run_pipeline(load_config(tiny=True), root)
    finally:
        if old is None:
            del os.environ["CARVE_WEIGHTS_DIR"]
        else:
            os.environ["CARVE_WEIGHTS_DIR"] = old


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
