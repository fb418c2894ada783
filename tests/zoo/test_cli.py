"""`carve zoo list|info` print what the library computes."""

import json

from carve.cli import main
from carve.zoo import create_model, profile
from carve.zoo.shipped import manifest
from carve.zoo.supernet import SHIPPED_NAME


def test_list_json(capsys):
    assert main(["zoo", "list", "mobilenet_v3_*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["mobilenet_v3_large_075", "mobilenet_v3_large_100",
                                         "mobilenet_v3_small_075", "mobilenet_v3_small_100"]
    prof = profile(create_model("mobilenet_v3_large_100"))
    assert rows[1]["params_m"] == round(prof.params / 1e6, 3) and rows[1]["macs_m"] == round(prof.macs / 1e6, 1)
    assert rows[1]["family"] == "mobilenet_v3_large"


def test_list_pretrained_table(capsys):
    assert main(["zoo", "list", "shufflenet_v2_1*", "--pretrained"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "published weights" in out[0]
    assert out[1].startswith("shufflenet_v2_100") and "*torchvision:IMAGENET1K_V1 (69.362)" in out[1]
    assert len(out) == 3
    assert main(["zoo", "list", "carve_*", "--pretrained", "--json"]) == 0
    shipped = {n for models in manifest().values() for n in models if n.startswith("carve_") and n != SHIPPED_NAME}
    assert {r["name"] for r in json.loads(capsys.readouterr().out)} == shipped  # carve's own: only what ships


def test_info_json_and_text(capsys, tmp_path):
    assert main(["zoo", "info", "carve_100", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    model = create_model("carve_100")
    assert info["spec"] == model.spec.to_dict() and info["hash"] == model.spec.hash()
    assert info["feature_info"] == list(model.feature_info)
    assert info["params"] == sum(p.numel() for p in model.parameters())
    spec_file = model.spec.save(tmp_path / "carve.json")
    assert main(["zoo", "info", str(spec_file), "--size", "160"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("carve_100 (carve)") and "at 160 px" in text and "(32 ch, /4)" in text


def test_info_unknown_model_fails_with_suggestions(capsys):
    assert main(["zoo", "info", "rexnet_10"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'rexnet_10'" in err and "rexnet_100" in err


def test_info_fvcore_table(capsys):
    assert main(["zoo", "info", "mobilenet_v3_small_075", "--size", "96", "--table"]) == 0
    out = capsys.readouterr().out
    assert "fvcore per-module table" in out and "| blocks.1 " in out and "| classifier " in out
