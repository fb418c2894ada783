"""Suite-wide: under CI, skips and xfails are failures (the hooks live in tests/ci_policy.py)."""

from .ci_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401  (pytest hooks)
