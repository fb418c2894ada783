"""The run's compress step: it compresses in the run's deploy runtime."""

from dataclasses import replace

import pytest

from carve.compress import CompressConfig
from carve.latency.runtime import RUNTIMES
from carve.run.compress_step import COMPRESS_RUNTIME, compress_runtime, finetune_settings
from carve.run.config import load_config


def test_the_compress_runtime_follows_the_deploy_runtime():
    assert compress_runtime("onnxruntime") == "onnxruntime" and compress_runtime("openvino") == "openvino"
    assert compress_runtime("eager") == "torch"
    for deploy in COMPRESS_RUNTIME:  # each one a runtime the compress stage accepts
        CompressConfig(model="carve_100", runtime=compress_runtime(deploy)).check()


@pytest.mark.parametrize("deploy", sorted(set(RUNTIMES) - set(COMPRESS_RUNTIME)))
def test_a_deploy_runtime_compress_cannot_measure_is_named(deploy):
    with pytest.raises(ValueError, match=rf"^zoo\.runtime: .*not '{deploy}'; run the other steps with --steps"):
        compress_runtime(deploy)


def test_the_pruning_finetune_takes_the_train_steps_data_unless_compress_sets_its_own():
    cfg = load_config(overrides={"train": {"train_per_class": 7, "batch_size": 16}})
    settings = finetune_settings(cfg)  # the embedded defaults give the finetune its own images per class
    assert settings["train_per_class"] == cfg.compress.finetune["train_per_class"] != 7
    assert settings["batch_size"] == 16 and settings["lr"] == cfg.compress.finetune["lr"]
    plain = finetune_settings(replace(cfg, compress=replace(cfg.compress, finetune={"lr": 0.01})))
    assert (plain["train_per_class"], plain["batch_size"], plain["lr"]) == (7, 16, 0.01)
