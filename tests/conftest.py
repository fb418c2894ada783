"""Suite-wide: under CI, skips and xfails are failures (see tests/ci_policy.py)."""

pytest_plugins = ["tests.ci_policy", "pytester"]
