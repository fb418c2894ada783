"""Sensitivity, keep-float and accuracy-controlled INT8 on a small net trained on real CIFAR-10."""

import copy
import json
import math

import onnx
import pytest
import torch

from carve.compress import QuantizeError, quantize
from carve.compress import controlled_int8
from carve.compress import measure_sensitivity
from carve.zoo import create_model

from .conftest import cifar_batches, randomize_bn


def broken_stem(model: torch.nn.Module, factor: float = 300.0) -> torch.nn.Module:
    """The same function in FP32, but one stem channel ``factor`` times larger (and the next conv
    reading it ``factor`` times smaller): per-tensor INT8 of the stem's output then loses the
    other channels, so the stem (or the block reading it) is where INT8 loses accuracy."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        m.stem.bn.weight[0] *= factor
        m.stem.bn.bias[0] *= factor
        first = next(mod for name, mod in m.named_modules() if name.startswith("blocks.0.0")
                     and isinstance(mod, torch.nn.Conv2d))
        first.weight[:, 0] /= factor
    return m


def weight_precision(path) -> dict[str, str]:
    """Node name -> 'int8' when a conv/gemm reads its weights through DequantizeLinear, else 'float'."""
    g = onnx.load(str(path)).graph
    prod = {o: n for n in g.node for o in n.output}
    return {n.name: ("int8" if n.input[1] in prod and prod[n.input[1]].op_type == "DequantizeLinear" else "float")
            for n in g.node if n.op_type in ("Conv", "Gemm")}


@pytest.fixture(scope="module")
def data():
    return cifar_batches("train", 4, 40), cifar_batches("test", 20, 50)


@pytest.mark.slow
def test_sensitivity_covers_every_block_and_names_the_broken_one(trained_tiny, data, tmp_path):
    model, _, _ = trained_tiny
    broken = broken_stem(model)
    calib, test = data
    with torch.no_grad():  # really the same function in FP32
        x = test[0][0]
        assert torch.allclose(broken(x), model(x), atol=1e-3)
    table = measure_sensitivity(broken, calib, test, tmp_path, calib_images=40, calibration="minmax", prune_ratios=(0.5,))
    units = [r.unit for r in table.rows]
    assert units[:2] == ["stem", "blocks.0.0"] and {"blocks.1.1", "blocks.2.0", "head_conv", "classifier"} <= set(units)
    for r in table.rows:
        assert r.nodes > 0 and math.isfinite(r.int8_drop) and math.isfinite(r.int8_top1)
    assert table.fp32_top1 - table.int8_top1 >= 3, table.markdown()  # the broken stem really hurts INT8
    assert table.ranked()[0] in ("stem", "blocks.0.0"), table.markdown()
    assert max(r.int8_drop for r in table.rows) >= 3, table.markdown()
    pruned = {r.unit: r.prune_drop for r in table.rows if r.prune_drop}
    assert {"stem", "blocks.0.0", "blocks.1.0", "head_conv"} <= set(pruned)
    assert all(math.isfinite(v) for d in pruned.values() for v in d.values())
    files = table.write(tmp_path)
    saved = json.loads(open(files["json"]).read())
    assert saved["ranked"][0] == table.ranked()[0] and len(saved["rows"]) == len(units)
    assert open(files["png"], "rb").read(4) == b"\x89PNG"


@pytest.mark.slow
def test_accuracy_control_returns_blocks_to_fp32_until_the_drop_is_met(trained_tiny, data, tmp_path):
    model, _, _ = trained_tiny
    calib, test = data
    res, _ = controlled_int8(broken_stem(model), calib=calib, eval=test, out_dir=tmp_path, max_drop=1.0,
                             calib_images=40, calibration="minmax")
    assert res.trail[0]["keep_float"] == [] and res.trail[0]["drop"] > 1.0  # plain INT8 misses the target
    assert res.met and res.drop <= 1.0 and res.trail[-1]["drop"] == res.drop
    assert res.keep_float and res.keep_float[0] in ("stem", "blocks.0.0")
    assert res.keep_float == res.table.ranked()[:len(res.keep_float)]  # most sensitive first
    assert len(res.trail) == len(res.keep_float) + 1
    kinds = weight_precision(res.model.path)
    kept = [n for n in kinds if n.split("/")[0].startswith(tuple(res.keep_float))]
    assert kept and all(kinds[n] == "float" for n in kept)
    assert sum(v == "int8" for v in kinds.values()) >= len(kinds) - len(kept) - 1


@pytest.mark.slow
def test_keep_float_leaves_the_matching_nodes_float_in_the_qdq_graph(tmp_path):
    model = randomize_bn(create_model("mobilenet_v3_small_075", num_classes=10)).eval()
    calib = cifar_batches("train", 1, 10)
    q, _ = quantize(model, calib=calib, runtime="onnxruntime", out_dir=tmp_path, calib_images=10,
                    calibration="minmax", keep_float=["*.se", "classifier"])
    kinds = weight_precision(q.path)
    se = [n for n in kinds if ".se." in n]
    assert len(se) == 2 * sum(1 for n, _ in model.named_modules() if n.endswith(".se.fc1"))
    assert all(kinds[n] == "float" for n in se) and kinds[next(n for n in kinds if n.startswith("classifier/"))] == "float"
    rest = [n for n in kinds if ".se." not in n and not n.startswith("classifier/")]
    assert rest and all(kinds[n] == "int8" for n in rest)
    with pytest.raises(QuantizeError, match=r"keep_float\[1\].*'\*\.sse'"):
        quantize(model, calib=calib, runtime="onnxruntime", out_dir=tmp_path, calib_images=10,
                 keep_float=["*.se", "*.sse"])
    with pytest.raises(QuantizeError, match="keep_float: expected a list"):
        quantize(model, calib=calib, runtime="onnxruntime", out_dir=tmp_path, calib_images=10, keep_float="*.se")


@pytest.mark.slow
def test_keep_float_leaves_the_matching_modules_float_in_pt2e():
    model = randomize_bn(create_model("mobilenet_v3_small_075", num_classes=10)).eval()
    calib = cifar_batches("train", 1, 10)
    q, _ = quantize(model, calib=calib, runtime="torch", calib_images=4, compile=False, keep_float=["*.se"])
    convs = [n for n in q.converted.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)]
    se = [n for n in convs if any(".se." in k or k.endswith(".se") for k, _ in n.meta.get("nn_module_stack", {}).values())]

    def int8_weight(node) -> bool:
        w = node.args[1]
        return w.op == "call_function" and "dequantize" in str(w.target)

    assert se and not any(int8_weight(n) for n in se)
    assert sum(int8_weight(n) for n in convs) == len(convs) - len(se)
    with pytest.raises(QuantizeError, match=r"keep_float\[0\]"):
        quantize(model, calib=calib, runtime="torch", calib_images=4, compile=False, keep_float=["nothing.*"])


def test_max_drop_must_be_a_non_negative_number(tmp_path):
    model = create_model("mobilenet_v3_small_075", num_classes=10)
    for bad in (-1, "1", True):
        with pytest.raises(QuantizeError, match="max_drop"):
            controlled_int8(model, calib=[torch.zeros(1, 3, 32, 32)], eval=[], out_dir=tmp_path, max_drop=bad)
    with pytest.raises(QuantizeError, match="eval"):
        controlled_int8(model, calib=[torch.zeros(1, 3, 32, 32)], eval=None, out_dir=tmp_path, max_drop=1)


def test_cli_names_bad_int8_settings(capsys):
    from carve.cli import main

    assert main(["compress", "mobilenet_v3_small_075", "--keep-float", "*.se", "--fold-bn", "--no-latency"]) == 2
    assert "keep_float" in capsys.readouterr().err
    assert main(["compress", "mobilenet_v3_small_075", "--quantize", "int8", "--max-drop", "-1", "--no-latency"]) == 2
    assert "max_drop" in capsys.readouterr().err
    assert main(["compress", "mobilenet_v3_small_075", "--sensitivity", "--sensitivity-prune", "1.5",
                 "--no-latency"]) == 2
    assert "sensitivity_prune[0]" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_writes_the_sensitivity_table_and_controls_the_drop(trained_tiny, tmp_path, capsys):
    from carve.cli import main

    from .conftest import cifar_dir

    _, weights, _ = trained_tiny
    out = tmp_path / "out"
    code = main(["compress", str(weights), "--quantize", "int8", "--runtime", "onnxruntime", "--calibration",
                 "minmax", "--max-drop", "100", "--keep-float", "classifier", "--sensitivity", "--sensitivity-prune",
                 "0.5", "--eval", str(cifar_dir()), "--eval-per-class", "4", "--calib-per-class", "2", "--no-latency",
                 "--out-dir", str(out), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    row = report["rows"][-1]
    assert row["notes"]["kept_float"] == ["classifier"] and row["notes"]["met"] is True  # 100 points: met at once
    assert row["notes"]["variants_tried"] == 1
    table = json.loads((out / "sensitivity.json").read_text())
    assert table["images"] == 40 and {r["unit"] for r in table["rows"]} >= {"stem", "blocks.0.0", "classifier"}
    assert all("0.5" in r["prune_drop"] for r in table["rows"] if r["unit"].startswith("blocks."))
    assert (out / "sensitivity.png").stat().st_size > 1000 and report["files"]["sensitivity_json"].endswith(".json")


@pytest.mark.slow
def test_qat_trains_on_batches_with_the_fp32_model_as_teacher(trained_tiny):
    from carve.compress import quantize_pt2e

    model, _, _ = trained_tiny
    train, test = cifar_batches("train", 3, 10), cifar_batches("test", 5, 50)
    ptq, _ = quantize_pt2e(model, calib=train, calib_images=10, compile=False)
    qat, _ = quantize_pt2e(model, calib=train, calib_images=10, compile=False, qat_steps=3, train_data=train,
                           teacher=model, lr=1e-3)
    x = test[0][0]
    with torch.no_grad():
        assert not torch.allclose(qat(x[:4]), ptq(x[:4]))  # the training steps changed the weights
        agree = sum((qat(b).argmax(1) == model(b).argmax(1)).sum().item() for b, _ in test) / 50
    assert agree >= 0.7 and "qat=3" in qat.carve_steps[-1]


@pytest.mark.parametrize("freeze", [False, True])
def test_qat_can_keep_the_batchnorm_statistics(freeze):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    from carve.compress.quantization import _freeze_bn_stats

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).train()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    x = torch.randn(8, 3, 8, 8) * 3 + 1
    prepared = prepare_qat_pt2e(torch.export.export(model, (x,)).module(), quantizer)
    if freeze:
        _freeze_bn_stats(prepared)
    before = {k: v.clone() for k, v in prepared.named_buffers() if "running" in k}
    assert len(before) == 2
    prepared(x)
    moved = [k for k, v in prepared.named_buffers() if k in before and not torch.equal(v, before[k])]
    assert moved == ([] if freeze else sorted(before, key=list(before).index))


def test_qat_settings_are_checked(capsys):
    from carve.cli import main

    assert main(["compress", "mobilenet_v3_small_075", "--quantize", "int8", "--runtime", "onnxruntime",
                 "--qat-epochs", "1", "--no-latency"]) == 2
    err = capsys.readouterr().err
    assert "qat_epochs" in err and "runtime='torch'" in err
    assert main(["compress", "mobilenet_v3_small_075", "--fold-bn", "--qat-epochs", "1", "--no-latency"]) == 2
    assert "qat_epochs" in capsys.readouterr().err


def test_the_cli_qat_keeps_the_batchnorm_statistics_unless_told(trained_tiny, monkeypatch, capsys):
    from carve.cli import main
    from carve.compress import CompressConfig
    from carve.compress import quantization

    from .conftest import cifar_dir

    real, seen = quantization.quantize_pt2e, []

    def recording(*args, **kw):
        seen.append(kw)
        return real(*args, **{**kw, "compile": False})

    monkeypatch.setattr(quantization, "quantize_pt2e", recording)
    _, weights, _ = trained_tiny
    assert main(["compress", str(weights), "--quantize", "int8", "--runtime", "torch", "--qat-epochs", "1",
                 "--finetune", '{"train_per_class": 2, "batch_size": 10}', "--eval", str(cifar_dir()),
                 "--eval-per-class", "2", "--calib-per-class", "1", "--no-latency", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][-1]
    assert len(seen) == 1 and seen[0]["freeze_bn_stats"] is True and seen[0]["qat_steps"] == 2
    assert row["notes"]["qat_freeze_bn"] is True and row["top1"] is not None
    quantize_kw = dict(CompressConfig(quantize="int8", qat_epochs=1, qat_freeze_bn=False).plan())["quantize"]
    assert quantize_kw["qat_freeze_bn"] is False


@pytest.mark.slow
def test_the_pt2e_table_quantizes_one_block_at_a_time_and_names_the_broken_one(trained_tiny, data, tmp_path):
    model, _, _ = trained_tiny
    broken = broken_stem(model)
    calib, test = data
    only, _ = quantize(broken, calib=calib, runtime="torch", calib_images=8, compile=False, only=["blocks.1.0"])
    convs = [n for n in only.converted.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)]
    int8 = [n for n in convs if n.args[1].op == "call_function" and "dequantize" in str(n.args[1].target)]
    assert int8 and all(any(k.startswith("blocks.1.0") for k, _ in n.meta["nn_module_stack"].values()) for n in int8)
    assert len(int8) < len(convs)
    table = measure_sensitivity(broken, calib, test, tmp_path, calib_images=40, prune_ratios=(), runtime="torch")
    assert table.runtime == "torch" and "PT2E" in table.markdown()
    assert table.fp32_top1 - table.int8_top1 >= 3, table.markdown()  # per-tensor activations: the stem hurts
    assert table.ranked()[0] in ("stem", "blocks.0.0"), table.markdown()
    assert all(math.isfinite(r.int8_drop) for r in table.rows) and len(table.rows) >= 6
    with pytest.raises(QuantizeError, match="runtime"):
        measure_sensitivity(broken, calib, test, tmp_path, runtime="openvino")
    with pytest.raises(QuantizeError, match="table_runtime"):
        controlled_int8(broken, calib=calib, eval=test, out_dir=tmp_path, table_runtime="openvino")


@pytest.mark.slow
def test_the_cli_measures_the_table_in_the_int8_flow_asked_for(trained_tiny, tmp_path, capsys):
    from carve.cli import main
    from carve.compress import CompressConfig

    from .conftest import cifar_dir

    _, weights, _ = trained_tiny
    assert main(["compress", str(weights), "--sensitivity", "--sensitivity-prune", "0.5", "--sensitivity-runtime",
                 "torch", "--eval", str(cifar_dir()), "--eval-per-class", "4", "--calib-per-class", "2",
                 "--no-latency", "--out-dir", str(tmp_path), "--json"]) == 0
    table = json.loads((tmp_path / "sensitivity.json").read_text())
    assert table["runtime"] == "torch" and table["images"] == 40 and table["rows"]
    assert "PT2E" in (tmp_path / "sensitivity.md").read_text()
    plan = dict(CompressConfig(quantize="int8", max_drop=1.0, sensitivity_runtime="torch").plan())
    assert plan["quantize"]["table_runtime"] == "torch"
    assert "table_runtime" not in dict(CompressConfig(quantize="int8", max_drop=1.0).plan())["quantize"]
