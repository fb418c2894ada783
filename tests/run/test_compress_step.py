"""The run's compress step: it compresses in the run's deploy runtime."""

import pytest

from carve.compress import CompressConfig
from carve.latency.runtime import RUNTIMES
from carve.run.compress_step import COMPRESS_RUNTIME, compress_runtime


def test_the_compress_runtime_follows_the_deploy_runtime():
    assert compress_runtime("onnxruntime") == "onnxruntime" and compress_runtime("openvino") == "openvino"
    assert compress_runtime("eager") == "torch"
    for deploy in COMPRESS_RUNTIME:  # each one a runtime the compress stage accepts
        CompressConfig(model="carve_100", runtime=compress_runtime(deploy)).check()


@pytest.mark.parametrize("deploy", sorted(set(RUNTIMES) - set(COMPRESS_RUNTIME)))
def test_a_deploy_runtime_compress_cannot_measure_is_named(deploy):
    with pytest.raises(ValueError, match=rf"^zoo\.runtime: .*not '{deploy}'; run the other steps with --steps"):
        compress_runtime(deploy)
