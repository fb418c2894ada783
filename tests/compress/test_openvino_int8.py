"""OpenVINO INT8 (NNCF) in the compress stage: quantize, accuracy control and the pipeline's rows."""

import copy

import pytest
import torch

from carve.compress import QuantizeError, controlled_int8, pipeline, quantize
from carve.compress.openvino_int8 import OvModel

from .conftest import cifar_batches, cifar_dir
from .test_sensitivity import broken_stem

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _agreement(a, b, batches):
    with torch.no_grad():
        same = sum((a(x).argmax(1) == b(x).argmax(1)).sum().item() for x, _ in batches)
    return same / sum(len(y) for _, y in batches)


def _int8_weights(xml) -> int:
    """Constants of the IR stored as 8-bit integers (NNCF compresses quantized weights to them)."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return sum(op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("i8", "u8")
               for op in model.get_ordered_ops())


def test_int8_openvino_agrees_with_fp32_on_real_images_at_any_size(trained_tiny, tmp_path):
    model, _, _ = trained_tiny
    calib, test = cifar_batches("train", 5, 50), cifar_batches("test", 10, 50)
    q, spec = quantize(model, calib=calib, runtime="openvino", out_dir=tmp_path, calib_images=50, threads=1)
    assert isinstance(q, OvModel) and spec == model.spec
    assert q.path == tmp_path / "model_int8.xml" and _int8_weights(q.path) >= 5
    assert _agreement(model, q, test) >= 0.85
    big = torch.randn(2, 3, 48, 48)  # the file leaves height and width free: deploy size differs from 32 px
    assert q(big).shape == (2, 10) and set(q._compiled) == {(1, 3, 32, 32), (1, 3, 48, 48)}
    twin = copy.deepcopy(q)  # the latency engine copies what it times
    assert twin is not q and torch.equal(twin(big), q(big))


def test_openvino_keep_float_patterns_are_checked(trained_tiny, tmp_path):
    model, _, _ = trained_tiny
    calib = cifar_batches("train", 1, 10)
    with pytest.raises(QuantizeError, match=r"keep_float\[0\]: pattern 'nope\.\*'"):
        quantize(model, calib=calib, runtime="openvino", out_dir=tmp_path, calib_images=10, keep_float=["nope.*"])


def test_accuracy_control_in_openvino_returns_blocks_to_fp32_until_the_drop_is_met(trained_tiny, tmp_path):
    model, _, _ = trained_tiny
    calib, test = cifar_batches("train", 4, 40), cifar_batches("test", 20, 50)
    broken = broken_stem(model)
    res, _ = controlled_int8(broken, calib=calib, eval=test, out_dir=tmp_path, max_drop=1.0, calib_images=40,
                             calibration="minmax", runtime="openvino", threads=1)
    assert isinstance(res.model, OvModel)
    assert res.trail[0]["keep_float"] == [] and res.trail[0]["drop"] > 1.0  # plain INT8 misses the target
    assert res.met and res.drop <= 1.0 and len(res.trail) == len(res.keep_float) + 1
    assert res.keep_float == res.table.ranked()[:len(res.keep_float)]  # most sensitive first
    assert res.model.carve_steps[-1].startswith("int8-openvino(")


def test_pipeline_times_every_row_in_openvino_and_ships_the_ir(trained_tiny, tmp_path):
    _, ckpt, _ = trained_tiny
    report = pipeline(ckpt, ["fold", ("quantize", {"precision": "int8", "calib_images": 20}),
                             ("export", {"formats": ("onnx", "openvino")})],
                      calib=cifar_dir(), eval=cifar_dir(), out_dir=tmp_path, runtime="openvino", img_size=32,
                      input_size=64, calib_per_class=2, eval_per_class=5, threads=1)
    rows = {r.name: r for r in report.rows}
    assert rows["original"].runtime == "openvino" and rows["fold"].runtime == "openvino"
    assert rows["int8 (openvino)"].runtime == "int8-openvino"
    assert all(r.latency_ms and r.latency_ms > 0 for r in report.rows)
    assert abs(rows["int8 (openvino)"].top1 - rows["fold"].top1) <= 6.0  # 50 images: one image is 2 points
    export = rows["export"].notes
    assert export["openvino"] == str(tmp_path / "model_int8.xml") and export["openvino_bytes"] > 0
    assert export["onnx"].startswith("skipped: an OpenVINO INT8 model")
    # the IR on disk: INT8 weights, but per-channel ranges weigh as much as a 3x3 depthwise kernel here
    assert rows["int8 (openvino)"].size_bytes < 0.9 * rows["fold"].size_bytes


def test_the_export_step_converts_a_float_model_to_openvino_ir_that_matches_it(trained_tiny, tmp_path):
    _, ckpt, _ = trained_tiny
    report = pipeline(ckpt, ["fold", ("export", {"formats": ("onnx", "openvino")})], eval=cifar_dir(),
                      out_dir=tmp_path, img_size=32, eval_per_class=2, latency=False)
    notes = report.rows[-1].notes
    assert notes["openvino"] == str(tmp_path / "model.xml") and (tmp_path / "model.bin").stat().st_size > 100_000
    assert notes["openvino_bytes"] > notes["onnx_bytes"] * 0.9  # FP32 weights, as in the ONNX file
    assert notes["openvino_max_abs_diff"] < 1e-4
