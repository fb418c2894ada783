import pytest

from carve.config import ConfigError
from carve.finetune import ClassifyConfig, DetectConfig
from carve.finetune.peft_options import PeftSettings, parse_peft


def test_parse_gives_typed_settings_with_defaults() -> None:
    assert parse_peft(None) is None and parse_peft("none") is None
    assert parse_peft("lora") == PeftSettings("lora", r=8, alpha=16.0, targets="pointwise")
    s = parse_peft("lora:r=4, alpha=8,targets=all,dropout=0.1")
    assert (s.r, s.alpha, s.targets, s.dropout) == (4, 8.0, "all", 0.1)
    assert parse_peft(s.to_text()) == s
    a = parse_peft("adapter:reduction=8")
    assert a.method == "adapter" and a.reduction == 8 and parse_peft(a.to_text()) == a


@pytest.mark.parametrize("text, problem", [
    ("lorra", "unknown method 'lorra'"),
    ("lora:r=0", "r must be an integer >= 1, got '0'"),
    ("lora:r=2.5", "r must be an integer >= 1"),
    ("lora:rank=4", "unknown lora option 'rank'"),
    ("lora:targets=depthwise", "targets must be one of pointwise|all"),
    ("lora:r", "expected key=value"),
    ("lora:r=4,r=8", "given twice"),
    ("adapter:r=4", "unknown adapter option 'r'"),
    ("adapter:dropout=1", "dropout must be a number in [0, 1)"),
])
def test_bad_strings_name_the_field_and_what_was_expected(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match="--peft: .*" + problem.replace("[", r"\[").replace("(", r"\(")
                       .replace("|", r"\|").replace(")", r"\)")):
        parse_peft(text, "--peft")
    for cls in (ClassifyConfig, DetectConfig):
        with pytest.raises(ConfigError) as err:
            cls(peft=text)
        assert err.value.path == f"{cls.__name__}.peft" and problem in err.value.problem


def test_configs_carry_the_typed_settings_and_refuse_freezing_with_peft() -> None:
    assert ClassifyConfig(peft="lora:r=2").peft_settings().r == 2
    assert DetectConfig().peft_settings() is None
    assert ClassifyConfig.from_dict(ClassifyConfig(peft="adapter").to_dict()).peft == "adapter"


def test_cli_names_a_bad_peft_string(capsys: pytest.CaptureFixture, tmp_path) -> None:
    from carve.cli import main

    rc = main(["finetune", "classify", "--backbone", "carve_075", "--data", str(tmp_path), "--peft", "lora:r=x"])
    err = capsys.readouterr().err
    assert rc == 2 and "peft" in err and "r must be an integer >= 1, got 'x'" in err
