"""carve.config: typed building from data, per-field rules, errors naming the field, round trips."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch

from carve.compress import CompressConfig
from carve.config import Config, ConfigError, Rule, build, read_mapping, setting
from carve.finetune import ClassifyConfig
from carve.search import ObjectiveConfig, SearchConfig
from carve.train import TrainConfig


@dataclass
class Inner(Config):
    mode: str = setting("a", choices=("a", "b"), help="a mode")
    count: int = setting(1, ">= 1")


@dataclass
class Outer(Config):
    inner: Inner = setting(default_factory=Inner)
    rate: float = setting(0.1, "positive")
    share: float | None = setting(None, "in [0, 1)")
    steps: list[str] = setting(default_factory=list, choices=("x", "y"))
    names: tuple[str, ...] = ()
    resume: bool | str = False
    extra: dict = setting(default_factory=dict)

    def check(self) -> None:
        if self.share == 0.5 and self.rate == 1.0:
            raise self.error("share", "0.5 does not go with rate 1")


@pytest.mark.parametrize("data, message", [
    ({"rate": "fast"}, "sec.rate: expected a number, got 'fast'"),
    ({"rate": True}, "sec.rate: expected a number, got True"),
    ({"rate": 0}, "sec.rate: expected a positive number, got 0.0"),
    ({"share": 1}, "sec.share: expected a number in [0, 1), got 1.0"),
    ({"steps": ["x", "z"]}, "sec.steps[1]: expected one of x, y, got 'z'"),
    ({"inner": {"count": 0}}, "sec.inner.count: expected an integer >= 1, got 0"),
    ({"inner": 3}, "sec.inner: expected a mapping of Inner fields, got 3"),
    ({"inner": {"mode": "c"}}, "sec.inner.mode: expected one of a, b, got 'c'"),
    ({"colour": 1}, "sec.colour: unknown field; known fields: inner, rate, share, steps, names, resume, extra"),
    ({"share": 0.5, "rate": 1}, "sec.share: 0.5 does not go with rate 1"),
    ({"resume": 3}, "sec.resume: expected true or false or a string, got 3"),
])
def test_bad_data_names_the_path(data, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$") as info:
        build(Outer, data, "sec")
    assert info.value.path == message.split(":")[0]


def test_types_are_coerced_and_round_trip():
    cfg = build(Outer, {"rate": 2, "names": ["a"], "inner": {"count": 3}, "resume": "last.pt"})
    assert cfg.rate == 2.0 and isinstance(cfg.rate, float) and cfg.names == ("a",) and cfg.inner.count == 3
    assert Outer.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["names"] == ["a"] and cfg.to_dict()["inner"] == {"mode": "a", "count": 3}


def test_construction_in_python_is_checked_the_same_way():
    with pytest.raises(ConfigError, match=r"^Outer\.rate: expected a positive number"):
        Outer(rate=-1)
    with pytest.raises(ConfigError, match=r"^Outer\.inner\.mode: expected one of a, b"):
        Outer(inner={"mode": "c"})
    with pytest.raises(ConfigError, match=r"^TrainConfig\.epochs: expected an integer >= 1, got 0$"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"^TrainConfig\.lr: expected a number, got '1'$"):
        TrainConfig(lr="1")
    with pytest.raises(ConfigError, match=r"^TrainConfig\.epochz: unknown field"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ConfigError, match=r"^ClassifyConfig\.epochs: expected an integer >= 1"):
        ClassifyConfig(epochs=0)  # a subclass changing a default keeps its base's rule
    cfg = Outer()
    cfg.rate = 0
    with pytest.raises(ConfigError, match=r"^Outer\.rate"):
        cfg.validate()


def test_missing_field_and_rule_syntax():
    @dataclass
    class Needs(Config):
        size: int = setting(rule="positive")

    with pytest.raises(ConfigError, match="^size: missing$"):
        build(Needs, {})
    assert Rule.parse("in (0, 1]").holds(1.0) and not Rule.parse("in (0, 1]").holds(0.0)
    with pytest.raises(ValueError, match="rule"):
        Rule.parse("between 0 and 1")


def test_search_config_builds_its_objective():
    cfg = SearchConfig(objective={"accuracy": "params", "runtime": "eager"}, warm_start=["carve_100"])
    assert isinstance(cfg.objective, ObjectiveConfig) and cfg.warm_start == ("carve_100",)
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"^objective\.runtime: expected one of eager, compile, onnxruntime"):
        build(SearchConfig, {"objective": {"runtime": "tensorrt"}})
    with pytest.raises(ConfigError, match=r"^ObjectiveConfig\.latency_table"):
        ObjectiveConfig(latency="predict")


def test_train_config_stores_modules_and_specs_as_today():
    from carve.zoo import create_model

    model = create_model("mobilenet_v3_small_075", num_classes=4)
    data = TrainConfig(model=model.spec, teacher=torch.nn.Linear(2, 2)).to_dict()
    assert data["model"] == model.spec.to_dict() and data["teacher"] == "<Linear module>"
    assert TrainConfig(model=model).to_dict()["model"] == f"<{type(model).__name__} module>"


def test_compress_config_plans_and_checks_finetune_fields():
    cfg = CompressConfig(model="m", quantize="int8", runtime="onnxruntime", keep_if_faster=1.1, fold_bn=True,
                         prune_macs=0.7, export=["onnx"], finetune={"lr": 0.1})
    # every step that changes the model is kept only where it pays (keep_if_faster)
    assert cfg.plan() == [("prune", {"importance": "l2", "iterations": 1, "finetune_epochs": 0, "target_macs": 0.7,
                                     "min_speedup": 1.1}),
                          ("fold", {"min_speedup": 1.1}),
                          ("quantize", {"precision": "int8", "calibration": "percentile", "min_speedup": 1.1}),
                          ("export", {"formats": ("onnx",)})]
    with pytest.raises(ConfigError, match=r"^CompressConfig\.finetune\.batch_size: expected an integer >= 1"):
        CompressConfig(model="m", finetune={"batch_size": 0})
    with pytest.raises(ConfigError, match=r"^CompressConfig\.finetune\.epochs: set by the compress step"):
        CompressConfig(model="m", finetune={"epochs": 3})
    with pytest.raises(ConfigError, match="no step"):
        CompressConfig(model="m").plan()


def test_read_mapping_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        read_mapping(bad)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        read_mapping(tmp_path / "list.yaml")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        read_mapping(tmp_path / "nope.yaml")
