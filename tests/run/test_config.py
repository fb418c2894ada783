import re

import pytest

from carve.run import ConfigError, load_config, parse_steps
from carve.run.config import dump_config


def test_defaults_load_and_tiny_overrides_them():
    cfg = load_config()
    tiny = load_config(tiny=True)
    assert cfg.name == "default" and tiny.name == "tiny"
    assert cfg.zoo.reference == "mobilenet_v3_large_100" and cfg.zoo.budget_ms is None
    assert tiny.search.trials == 2 and tiny.train.epochs == 1
    assert tiny.train.lr == cfg.train.lr  # untouched fields keep the defaults
    assert cfg.section_hash("search") != tiny.section_hash("search")
    assert cfg.section_hash("zoo") == load_config().section_hash("zoo")


def test_user_file_merges_over_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nsearch: {trials: 3}\nzoo: {budget_ms: 4}\n")
    cfg = load_config(path)
    assert (cfg.name, cfg.search.trials, cfg.zoo.budget_ms, cfg.search.objective.epochs) == ("mine", 3, 4.0, 1)
    again = load_config(overrides=__import__("yaml").safe_load(dump_config(cfg)))
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("text, field", [
    ("search: {trails: 3}", "search.trails"),
    ("search: {trials: three}", "search.trials"),
    ("search: {trials: 0}", "search.trials"),
    ("zoo: {runtime: tensorrt}", "zoo.runtime"),
    ("compress: {export: [onnx, tflite]}", "compress.export[1]"),
    ("compress: {prune: 1.5, prune_macs: null}", "compress.prune"),
    ("compress: {prune_macs: 1.5}", "compress.prune_macs"),
    ("compress: {keep_if_faster: 0}", "compress.keep_if_faster"),
    ("compress: {finetune: {lr: 0}}", "compress.finetune.lr"),
    ("train: {bn_recalibration: -1}", "train.bn_recalibration"),
    ("compress: {prune: 0.3}", "compress.prune_macs"),
    ("compress: {runtime: onnxruntime}", "compress.runtime"),  # follows zoo.runtime
    ("train: {data: elsewhere}", "train.data"),
    ("search: {objective: {num_classes: 3}}", "search.objective.num_classes"),
    ("train: {warmup_epochs: -1}", "train.warmup_epochs"),
    ("train: {aug: heavy}", "train.aug"),
    ("train: {lr: true}", "train.lr"),
    ("train: 3", "train"),
    ("colour: red", "colour"),
])
def test_bad_values_name_the_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match="^" + re.escape(field) + ": "):
        load_config(path)


def test_user_file_overrides_tiny(tmp_path):
    path = tmp_path / "three.yaml"
    path.write_text("search: {trials: 3}\n")
    cfg = load_config(path, tiny=True)
    assert (cfg.search.trials, cfg.search.objective.val_per_class, cfg.name) == (3, 1, "tiny")


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="--config"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_missing_dataset_names_the_field(tmp_path):
    cfg = load_config(overrides={"data": {"classify": str(tmp_path / "absent")}})
    with pytest.raises(FileNotFoundError, match=r"data\.classify"):
        cfg.data_path("classify")


def test_parse_steps_orders_and_rejects_unknown():
    assert parse_steps(None) == ["zoo", "search", "train", "finetune", "compress", "report"]
    assert parse_steps("report,zoo") == ["zoo", "report"]
    with pytest.raises(ValueError, match="--steps: unknown step 'serach'"):
        parse_steps("zoo,serach")
