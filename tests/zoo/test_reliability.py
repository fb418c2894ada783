"""Bad weights and spec files are errors naming the file and field, through the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from carve.cli import main
from carve.zoo import SpecError, WeightsError, create_model, parse_spec, profile, save_weights

SPEC = {
    "name": "small", "family": "test",
    "stem": {"channels": 8, "stride": 2},
    "stages": [[{"kind": "ir", "out_channels": 16, "stride": 2, "expansion": 2}],
               [{"kind": "ir", "out_channels": 24, "stride": 2, "expansion": 2},
                {"kind": "ir", "out_channels": 24, "expansion": 2}]],
    "head": {"conv_channels": 32, "num_classes": 10},
}


def _info(target: Path, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["zoo", "info", str(target), *extra])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("cut", ["empty", "truncated"])
def test_a_broken_safetensors_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture, cut: str) -> None:
    good = save_weights(create_model(SPEC), tmp_path / "good.safetensors")
    broken = tmp_path / "broken.safetensors"
    data = good.read_bytes()
    broken.write_bytes(b"" if cut == "empty" else data[: len(data) // 2])
    rc, err = _info(broken, capsys)
    assert rc == 2 and f"{broken}: not a readable .safetensors file" in err
    capsys.readouterr()
    rc = main(["eval", str(broken), "--data", str(tmp_path)])
    assert rc == 2 and str(broken) in capsys.readouterr().err
    with pytest.raises(WeightsError, match="not a readable"):  # pretrained= reads through the same function
        create_model(SPEC, pretrained=str(broken))


def test_a_spec_that_is_not_utf8_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "spec.json"
    spec.write_bytes(json.dumps(SPEC).replace("small", "sm\u00e4ll").encode("latin-1"))
    rc, err = _info(spec, capsys)
    assert rc == 2 and f"{spec}: not UTF-8 text (byte 0xe4" in err


@pytest.mark.parametrize("where, value, field", [
    (("stages", 0, 0, "out_channels"), 10**9, "stages[0].blocks[0].out_channels"),
    (("stages", 1, 0, "expansion"), 10**8, "stages[1].blocks[0].mid_channels"),
    (("stem", "channels"), 10**9, "stem.channels"),
    (("head", "conv_channels"), 10**9, "head.conv_channels"),
])
def test_absurd_widths_are_refused_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture, where: tuple,
                                                    value: int, field: str) -> None:
    data = copy.deepcopy(SPEC)
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(data))
    rc, err = _info(spec, capsys)
    assert rc == 2 and f"{field}: must be at most 65536" in err


def test_strides_below_one_pixel_at_the_input_size_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))  # total stride 8
    assert _info(spec, capsys, "--size", "8")[0] == 0  # 8 -> 4 -> 2 -> 1
    rc, err = _info(spec, capsys, "--size", "4")  # 4 -> 2 -> 1, then a stride on a 1x1 map
    assert rc == 2 and "stages[1].blocks[0].stride: at input size 4 the feature map is already 1x1" in err
    with pytest.raises(SpecError, match=r"stem.pool: at input size 2 .* 1x1"):
        profile(create_model({**SPEC, "stem": {"channels": 8, "stride": 2, "pool": True}}), 2)
    assert profile(create_model(parse_spec(SPEC)), 5).macs > 0  # 5 -> 3 -> 2 -> 1: rounded up, allowed
