"""LiteRT (XNNPACK) in the latency engine: a .tflite model timed with the protocol, parity on real images."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from carve.latency import QUICK, measure
from carve.latency.artefact import open_artefact
from carve.latency.litert_runtime import export_tflite, is_tflite, litert_interpreter
from carve.latency.parity import check_parity
from carve.zoo import create_model, parse_spec

from .test_openvino import TINY, cifar_images, tiny_model


def test_litert_model_matches_pytorch_on_real_images(tmp_path: Path) -> None:
    model = tiny_model()
    path = export_tflite(model, tmp_path / "tiny.tflite", input_size=32)
    assert is_tflite(path.read_bytes()) and not is_tflite(b"\x80\x04\x95pickle")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.tflite"]  # written atomically, nothing left beside it
    art = open_artefact(path, threads=1)
    assert art.runtime == "litert" and art.input_shape == (1, 3, 32, 32)
    p = check_parity(model, art.run, cifar_images())
    assert p.images == 20 and p.top1_agreement == 1.0 and 0 <= p.max_abs_diff < 1e-4, p
    with pytest.raises(ValueError, match="LiteRT runs .tflite files only"):
        open_artefact(path, "openvino")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="fake.tflite: not a LiteRT model"):
        open_artefact(fake)


def test_litert_int8_stays_close_to_pytorch(tmp_path: Path) -> None:
    model = tiny_model()
    images = cifar_images()
    calib = [x[None] for x in images[0][0][:16]]
    fp32 = export_tflite(model, tmp_path / "fp32.tflite", input_size=32)
    int8 = export_tflite(model, tmp_path / "int8.tflite", input_size=32, calib=calib)
    dtypes = lambda path: {t["dtype"].__name__ for t in litert_interpreter(path).get_tensor_details()}  # noqa: E731
    assert "int8" in dtypes(int8) and "int8" not in dtypes(fp32)  # the weights really are stored in 8 bits
    p = check_parity(model, open_artefact(int8).run, images)
    assert p.top1_agreement >= 0.8 and 1e-4 < p.max_abs_diff < 1.0, p
    with pytest.raises(ValueError, match="calib: INT8 LiteRT export needs calibration images"):
        export_tflite(model, tmp_path / "none.tflite", input_size=32, calib=[])


def test_measure_in_litert_is_cached_by_its_version(tmp_path: Path) -> None:
    spec = parse_spec(TINY)
    kw = dict(input_size=32, threads=1, protocol=QUICK, cache=tmp_path / "lat.db")
    r = measure(spec, runtime="litert", **kw)
    assert r.median_ms > 0 and r.runs >= QUICK.min_runs and r.conditions["tflite_file"].endswith(".tflite")
    assert r.fingerprint["litert"] == version("ai-edge-litert") and not r.cached
    assert r.fingerprint["litert_torch"] == version("litert-torch")
    assert measure(spec, runtime="litert", **kw).cached


def test_litert_int8_keeps_matching_modules_in_float(tmp_path: Path) -> None:
    model = tiny_model()
    images = cifar_images()
    calib = [x[None] for x in images[0][0][:16]]
    int8 = export_tflite(model, tmp_path / "int8.tflite", input_size=32, calib=calib)
    kept = export_tflite(model, tmp_path / "kept.tflite", input_size=32, calib=calib, keep_float=["classifier"])
    classifier = tuple(model.classifier.weight.shape)

    def weights(path: Path) -> list[str]:  # dtypes of the tensors shaped like the classifier's weight
        return [t["dtype"].__name__ for t in litert_interpreter(path).get_tensor_details()
                if tuple(t["shape"]) == classifier]

    assert weights(int8) == ["int8"] and weights(kept) == ["float32"]
    p = check_parity(model, open_artefact(kept).run, images)
    assert p.top1_agreement >= 0.8 and 1e-4 < p.max_abs_diff < 1.0, p
    with pytest.raises(ValueError, match=r"keep_float\[0\]: pattern '\*.nothing' matches no module"):
        export_tflite(model, tmp_path / "bad.tflite", input_size=32, calib=calib, keep_float=["*.nothing"])


def test_litert_int8_file_computes_what_its_quantized_graph_does(tmp_path: Path) -> None:
    import torch

    from carve.latency.litert_runtime import _quantize

    model = tiny_model()
    with torch.no_grad():  # a classifier with real biases: a bias quantized for the wrong scale shows in the logits
        model.classifier.bias.uniform_(-2.0, 2.0)
    images = cifar_images()[0][0]
    calib = [x[None] for x in images]
    int8 = open_artefact(export_tflite(model, tmp_path / "int8.tflite", input_size=32, calib=calib))
    graph, _ = _quantize(model, torch.zeros(1, 3, 32, 32), calib)
    with torch.no_grad():
        want = torch.cat([graph(x) for x in calib])
    got = torch.cat([torch.as_tensor(int8.run(x.numpy())) for x in calib])
    assert float((got - want).norm() / want.norm()) < 0.05  # the file's own rounding, nothing more


RESIDUAL = dict(name="litert_residual", family="test", stem=dict(channels=16, act="hardswish"),
                stages=[[dict(kind="ir", out_channels=16, stride=1, expansion=2, act="hardswish"),
                         dict(kind="ir", out_channels=16, stride=1, expansion=2, act="hardswish", se=dict(ratio=0.25))]],
                head=dict(num_classes=10, fc_channels=32, fc_act="hardswish"))


def test_litert_int8_runs_hardswish_and_residual_adds_in_integer_kernels(tmp_path: Path) -> None:
    import torch

    from carve.latency.litert_runtime import _quantize

    torch.manual_seed(0)
    model = create_model(parse_spec(RESIDUAL)).eval()
    images = cifar_images()
    calib = [x[None] for x in images[0][0]]
    path = export_tflite(model, tmp_path / "int8.tflite", input_size=32, calib=calib)
    interpreter = litert_interpreter(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = [o for o in interpreter._get_ops_details() if o["op_name"] != "DELEGATE"]
    assert "HARD_SWISH" not in {o["op_name"] for o in ops}  # XNNPACK has no INT8 HARD_SWISH kernel
    feature_maps = [o for o in ops if len(shape := tensors[o["outputs"][0]]["shape"]) == 4 and shape[1] > 1]
    assert {o["op_name"] for o in feature_maps} >= {"CONV_2D", "ADD", "MUL"}
    assert [o["op_name"] for o in feature_maps if tensors[o["outputs"][0]]["dtype"].__name__ != "int8"] == []
    shortcuts = [o for o in feature_maps if o["op_name"] == "ADD" and all(
        len(tensors[i]["shape"]) == 4 and tensors[i]["shape"][1] > 1 for i in o["inputs"])]
    assert len(shortcuts) == 2  # both blocks are residual
    graph, _ = _quantize(model, torch.zeros(1, 3, 32, 32), calib)
    with torch.no_grad():
        want = torch.cat([graph(x) for x in calib])
    got = torch.cat([torch.as_tensor(open_artefact(path).run(x.numpy())) for x in calib])
    assert float((got - want).norm() / want.norm()) < 0.05
    p = check_parity(model, open_artefact(path).run, images)
    assert p.top1_agreement >= 0.8, p


SHUFFLE = dict(name="litert_shuffle", family="test", stem=dict(channels=16, act="relu"),
               stages=[[dict(kind="shuffle", out_channels=32, stride=2, act="relu"),
                        dict(kind="shuffle", out_channels=32, stride=1, act="relu"),
                        dict(kind="shuffle", out_channels=32, stride=1, act="relu")]],
               head=dict(num_classes=10))


def test_litert_int8_quantizes_each_concatenation_and_shuffle_with_one_scale(tmp_path: Path) -> None:
    import torch

    from carve.latency.litert_runtime import _quantize

    torch.manual_seed(0)
    model = create_model(parse_spec(SHUFFLE)).eval()
    images = cifar_images()
    calib = [x[None] for x in images[0][0]]
    graph, _ = _quantize(model, torch.zeros(1, 3, 32, 32), calib)

    def scale(node: torch.fx.Node) -> float:  # of a dequantize node
        assert "dequantize_per_tensor" in str(node.target), node.format_node()
        return float(node.args[1])

    cats = [n for n in graph.graph.nodes if str(n.target) == "aten.cat.default"]
    assert len(cats) == 3
    for cat in cats:
        (quantize,) = cat.users  # the concatenation's output is quantized ...
        assert "quantize_per_tensor" in str(quantize.target)
        assert {scale(a) for a in cat.args[0]} == {float(quantize.args[1])}  # ... with its inputs' one scale
        node = quantize
        for op in ("aten.view.default", "aten.transpose.int", "aten.reshape.default"):  # the channel shuffle
            node = next(iter(next(iter(node.users)).users))  # past the quantize/dequantize pair
            assert str(node.target) == op and scale(node.args[0]) == float(quantize.args[1])
            node = next(iter(node.users))
    path = export_tflite(model, tmp_path / "int8.tflite", input_size=32, calib=calib)
    with torch.no_grad():
        want = torch.cat([graph(x) for x in calib])
    got = torch.cat([torch.as_tensor(open_artefact(path).run(x.numpy())) for x in calib])
    assert float((got - want).norm() / want.norm()) < 0.05  # the program computes what its graph does
