"""Suite-wide: under CI, skips and xfails are failures (the hooks live in tests/ci_policy.py)."""

import pytest
import torch

from .ci_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401  (pytest hooks)


@pytest.fixture
def one_thread():
    """The machine's two cores are shared: one intra-op thread avoids oversubscription stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
