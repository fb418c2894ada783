"""Accuracy-controlled INT8 spends accuracy work only on an INT8 model that can pay."""

import pytest

from carve.compress import controlled_int8, pipeline
from carve.compress.quantization import OrtModel

from .conftest import cifar_batches, cifar_dir
from .test_sensitivity import weight_precision


def test_a_speed_gate_that_fails_stops_before_the_sensitivity_table(trained_tiny, tmp_path):
    model, _, _ = trained_tiny
    seen = []

    def too_slow(q):
        seen.append(q)
        return False

    res, _ = controlled_int8(model, calib=cifar_batches("train", 2, 20), eval=cifar_batches("test", 5, 50),
                             out_dir=tmp_path, max_drop=0.0, calib_images=20, speed_gate=too_slow)
    assert len(seen) == 1 and isinstance(seen[0], OrtModel) and res.model is seen[0]
    kinds = weight_precision(seen[0].path)
    assert kinds and all(v == "int8" for v in kinds.values())  # the gate saw the fully quantized graph
    assert res.too_slow and res.table is None and res.keep_float == []
    assert [t["keep_float"] for t in res.trail] == [[]] and res.drop == pytest.approx(res.trail[0]["drop"])
    assert res.notes()["accuracy_control"].startswith("skipped")
    assert not (tmp_path / "sensitivity_int8.onnx").exists()


@pytest.mark.parametrize("min_speedup", [1e6, 1e-6])
def test_the_pipeline_times_full_int8_before_controlling_its_accuracy(trained_tiny, tmp_path, min_speedup):
    _, weights, _ = trained_tiny
    report = pipeline(weights, [("quantize", {"runtime": "onnxruntime", "min_speedup": min_speedup,
                                              "calib_images": 20})],
                      calib=cifar_dir(), eval=cifar_dir(), eval_per_class=5, out_dir=tmp_path, threads=1,
                      runtime="onnxruntime", max_drop=0.0)
    int8 = report.rows[1]
    gate = int8.notes["gate"]
    assert gate["speedup"] > 0 and gate["windows"] >= 1  # paired round by round, not the medians' ratio
    if min_speedup > 1:  # dropped for speed: no sensitivity measured, one variant tried
        assert int8.notes["kept"] is False and int8.notes["variants_tried"] == 1
        assert "accuracy_control" in int8.notes and "accuracy_gate" not in int8.notes
        assert not (tmp_path / "sensitivity_int8.onnx").exists()
    else:  # it pays: accuracy control ran as before (a sensitivity table, then the budget)
        assert "accuracy_control" not in int8.notes and int8.notes.get("kept", True)
        assert (tmp_path / "sensitivity_int8.onnx").exists()
