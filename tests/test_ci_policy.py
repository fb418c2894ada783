"""Under CI a skip hides a failure: it must fail the run; locally it skips and is listed with its reason."""

import pytest

SUITE = '''
import pytest

@pytest.fixture
def shared_data():
    pytest.skip("cifar10 not found at ../shared/data/cifar10")

def test_needs_data(shared_data):
    pass

def test_import_failure_as_xfail():
    pytest.xfail("stage absent: ImportError")

@pytest.mark.hardware
@pytest.mark.skipif(True, reason="no CUDA device")
def test_needs_a_gpu():
    pass

def test_runs():
    pass
'''


SKIPPED_MODULE = 'import pytest\npytest.importorskip("a_module_that_is_not_installed")\n\ndef test_x():\n    pass\n'
PLUGINS = ("-p", "tests.ci_policy", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-rsx")


def test_under_ci_skips_and_xfails_fail_except_hardware(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("CI", "1")
    pytester.makepyfile(test_suite=SUITE, test_skipped_module=SKIPPED_MODULE)
    result = pytester.runpytest_inprocess(*PLUGINS, "--continue-on-collection-errors")
    # the fixture's skip fails in setup (an error), the skipped module fails its collection (an error)
    result.assert_outcomes(passed=1, failed=1, errors=2, skipped=1)
    result.stdout.fnmatch_lines_random(["*cifar10 not found at ../shared/data/cifar10*", "*under CI a skip is a failure*",
                                        "*xfail (stage absent: ImportError)*", "SKIPPED*no CUDA device*",
                                        "*a_module_that_is_not_installed*"])
    assert result.ret != 0


def test_outside_ci_skips_are_listed_with_their_reason(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("CI", "0")
    pytester.makepyfile(test_suite=SUITE, test_skipped_module=SKIPPED_MODULE)
    result = pytester.runpytest_inprocess(*PLUGINS)
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    result.stdout.fnmatch_lines_random(["SKIPPED*cifar10 not found*", "XFAIL*stage absent*",
                                        "SKIPPED*a_module_that_is_not_installed*"])
    assert result.ret == 0


def test_what_counts_as_ci(monkeypatch) -> None:
    from tests.ci_policy import on_ci

    for value, expected in [("1", True), ("true", True), ("yes", True), ("", False), ("0", False), ("false", False)]:
        monkeypatch.setenv("CI", value)
        assert on_ci() is expected, value
    monkeypatch.delenv("CI")
    assert not on_ci()
