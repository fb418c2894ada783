"""Under CI a skip or xfail is a failure: `.ci/run` installs everything the suite needs.

Locally a test may skip when the shared data, PostgreSQL or Chromium is missing, and pytest lists
every skip with its reason (``-rsx`` in pyproject.toml). With ``CI`` set (``.ci/run`` sets
``CI=1``) the same skip fails the run, so a green CI means every test ran. Tests that need hardware
a CI machine may lack (a GPU, glibc) carry ``@pytest.mark.hardware`` and may still skip.
"""

from __future__ import annotations

import os

import pytest

POLICY = ("under CI a skip is a failure: .ci/run installs what every test needs (data in ../shared/data, "
          "Chromium, PostgreSQL); a test that needs hardware CI may lack is marked @pytest.mark.hardware")


def on_ci() -> bool:
    """True when the CI environment variable is set to anything but empty, 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    if getattr(report, "wasxfail", None) is not None:
        return f"xfail ({report.wasxfail})"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = _reason(report)
    if hasattr(report, "wasxfail"):
        del report.wasxfail
    report.outcome = "failed"
    report.longrepr = f"{reason}\n{POLICY}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    outcome = yield
    report = outcome.get_result()
    if report.skipped and on_ci() and item.get_closest_marker("hardware") is None:
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # noqa: ANN201
    outcome = yield
    report = outcome.get_result()
    if report.skipped and on_ci():
        _fail(report)
