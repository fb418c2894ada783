import json

import pytest

from carve.cli import main
from carve.compress import parse_steps, pipeline
from carve.compress.pruning import PruneError

from .conftest import cifar_dir


def test_prune_finetune_with_kd_recovers_accuracy_and_report_is_written(trained_tiny, tmp_path, capsys):
    model, weights, top1 = trained_tiny
    data = cifar_dir()
    common = dict(eval=data, out_dir=tmp_path / "a", eval_per_class=20, latency=False)
    cut = pipeline(weights, [("prune", {"ratio": 0.3})], **common)
    report = pipeline(weights, [("prune", {"ratio": 0.3}), "fold", ("export", {"formats": ("onnx",)})],
                      finetune_epochs=2, finetune={"train_per_class": 100, "val_per_class": 20, "batch_size": 50,
                                                   "lr": 0.5, "aug": "none", "label_smoothing": 0.0},
                      **{**common, "out_dir": tmp_path / "b"})
    assert "epoch 2" in capsys.readouterr().err  # the KD finetuning shows a progress bar
    original, pruned, folded, exported = report.rows
    assert original.top1 == pytest.approx(top1, abs=0.6)
    assert pruned.macs < 0.7 * original.macs
    before = cut.rows[1].top1
    assert pruned.top1 > before  # finetuning with the teacher recovers accuracy lost to pruning
    assert pruned.top1 >= original.top1 - 10
    assert folded.top1 == pytest.approx(pruned.top1, abs=0.6)
    assert exported.notes["onnx_top1_agreement"] >= 0.95
    saved = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [r["name"] for r in saved["rows"]] == [r.name for r in report.rows]
    assert (tmp_path / "b" / "report.png").stat().st_size > 1000
    assert "| prune 0.3 + finetune 2ep |" in (tmp_path / "b" / "report.md").read_text()


def test_bad_pipeline_inputs_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown step 'sparsify'"):
        parse_steps(["fold", "sparsify"])
    with pytest.raises(PruneError, match=r"\[0, 1\)"):
        parse_steps([("prune", {"ratio": 1.0})])
    with pytest.raises(ValueError, match="calib"):
        pipeline("mobilenet_v3_small_075", ["quantize"], out_dir=tmp_path, latency=False)
    with pytest.raises(FileNotFoundError, match="calib: data folder not found"):
        pipeline("mobilenet_v3_small_075", ["quantize"], calib=tmp_path / "missing", out_dir=tmp_path)


def test_cli_reports_errors_and_runs_a_small_compression(tmp_path, capsys):
    assert main(["compress", "mobilenet_v3_small_075", "--prune", "1.5", "--no-latency"]) == 2
    assert "[0, 1)" in capsys.readouterr().err
    assert main(["compress", "mobilenet_v3_small_075", "--no-latency"]) == 2
    assert "no step" in capsys.readouterr().err
    spec = tmp_path / "out"
    code = main(["compress", "mobilenet_v3_small_075", "--num-classes", "10", "--fold-bn", "--prune", "0.3",
                 "--eval", str(cifar_dir()), "--eval-per-class", "2", "--no-latency", "--out-dir", str(spec),
                 "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in out["rows"]] == ["original", "prune 0.3", "fold"]
    assert (spec / "pruned.safetensors").is_file() and (spec / "report.md").is_file()


@pytest.mark.parametrize("min_speedup, kept", [(1e6, False), (1e-6, True)])
def test_quantization_is_kept_only_where_it_pays(trained_tiny, tmp_path, min_speedup, kept):
    _, weights, _ = trained_tiny
    report = pipeline(weights, [("quantize", {"runtime": "onnxruntime", "min_speedup": min_speedup,
                                              "calib_images": 20}), "export"],
                      calib=cifar_dir(), eval=cifar_dir(), eval_per_class=5, out_dir=tmp_path, threads=1,
                      runtime="onnxruntime")
    original, int8, exported = report.rows
    assert int8.latency_ms and int8.notes.get("kept", True) is kept
    gate = int8.notes["gate"]  # the keep-or-drop decision timed the pair interleaved
    assert gate["speedup"] > 0 and gate["before_ms"] > 0 and gate["after_ms"] > 0
    # the final table's speed-ups are paired round by round against the original row, and reported so
    assert original.speedup == 1.0 and int8.speedup > 0
    assert f"| {int8.speedup_over(original):.2f}x |" in report.markdown()
    assert all(r.latency_ms > 0 for r in report.rows) and "interleaved" in report.reference["timing"]
    assert ("not kept" in int8.name) is not kept
    if kept:  # the deployable is the INT8 graph
        assert exported.notes["onnx"].endswith("model_int8.onnx") and exported.runtime == "int8-onnxruntime"
    else:  # the FP32 model went on to export, verified against PyTorch
        assert exported.runtime == "onnxruntime" and exported.notes["onnx_top1_agreement"] >= 0.95
        assert exported.size_bytes > 1.5 * int8.size_bytes  # FP32 weights, not INT8 ones
        assert "the model before it was kept" in report.verdicts()[0]
        assert report.verdicts()[1].startswith("export: ")


def test_a_pruning_step_that_does_not_pay_is_dropped(trained_tiny, tmp_path):
    _, weights, _ = trained_tiny
    report = pipeline(weights, [("prune", {"ratio": 0.3, "min_speedup": 1e6}), "fold"], eval=cifar_dir(),
                      eval_per_class=2, out_dir=tmp_path, threads=1, runtime="onnxruntime")
    original, pruned, folded = report.rows
    assert pruned.notes["kept"] is False and pruned.name.endswith("(not kept)")
    assert pruned.params < original.params
    assert folded.params <= original.params and folded.macs == original.macs  # folded from the unpruned model
    assert "the model before it was kept" in report.verdicts()[0]


def test_a_step_that_loses_more_than_max_drop_is_reported_and_dropped(trained_tiny, tmp_path):
    _, ckpt, _ = trained_tiny
    steps = [("prune", {"ratio": 0.6}), "fold", ("quantize", {"precision": "int8", "calib_images": 20})]
    report = pipeline(ckpt, steps, calib=cifar_dir(), eval=cifar_dir(), out_dir=tmp_path, img_size=32,
                      eval_per_class=10, calib_per_class=2, runtime="onnxruntime", latency=False, max_drop=1.0)
    original, pruned, fold, int8 = report.rows
    assert original.top1 - pruned.top1 > 1.0  # 60 % of the channels gone, no finetuning
    assert pruned.name.endswith("(not kept)") and pruned.notes["kept"] is False
    assert pruned.notes["accuracy_gate"] == dict(lost=round(original.top1 - pruned.top1, 3), max_drop=1.0)
    assert fold.macs == original.macs and abs(fold.top1 - original.top1) < 1e-6  # fold went on from the original
    assert any("more than max_drop 1" in v for v in report.verdicts())
    assert (int8.params, int8.macs) == (fold.params, fold.macs)  # counted from the kept model, not the dropped one
    with pytest.raises(ValueError, match="max_drop: an accuracy budget needs held-out data"):
        pipeline(ckpt, steps[:2], out_dir=tmp_path, img_size=32, latency=False, max_drop=1.0)


def test_int8_is_accuracy_controlled_to_the_budget_the_earlier_steps_left(trained_tiny, tmp_path):
    _, ckpt, _ = trained_tiny
    report = pipeline(ckpt, [("prune", {"ratio": 0.1}), ("quantize", {"precision": "int8", "calib_images": 20})],
                      calib=cifar_dir(), eval=cifar_dir(), out_dir=tmp_path, runtime="onnxruntime", img_size=32,
                      calib_per_class=2, eval_per_class=10, latency=False, max_drop=25.0)
    original, pruned, int8 = report.rows
    lost = original.top1 - pruned.top1  # 10 % of a 70k-parameter net's channels, unfinetuned: ~18 points
    assert 0 < lost <= 25.0 and pruned.notes.get("kept", True)
    assert int8.notes["max_drop"] == pytest.approx(max(0.0, 25.0 - lost))  # what pruning left of the budget
    assert int8.notes["accuracy_gate"]["max_drop"] == 25.0
    assert int8.notes.get("kept", True) == (original.top1 - int8.top1 <= 25.0)


def test_every_row_is_timed_with_the_protocol_asked_for(trained_tiny, tmp_path, monkeypatch):
    from carve.compress import step_runner
    from carve.latency import QUICK

    _, weights, _ = trained_tiny
    used = []
    real = step_runner.time_together

    def spy(*args, **kw):
        used.append(kw["protocol"])
        return real(*args, **kw)

    monkeypatch.setattr(step_runner, "time_together", spy)
    report = pipeline(weights, [("fold", {"min_speedup": 1e-6})], out_dir=tmp_path, threads=1, runtime="onnxruntime",
                      protocol="quick")
    assert used and all(p == QUICK for p in used)  # the fold gate's pair and the final table
    assert "(quick protocol)" in report.reference["timing"] and all(r.latency_ms > 0 for r in report.rows)
    with pytest.raises(ValueError, match="protocol: expected one of full, quick, got 'slow'"):
        pipeline(weights, ["fold"], out_dir=tmp_path, protocol="slow")
