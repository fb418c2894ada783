import pytest
import torch
from torch import nn

from carve.compress.step_timing import TimedModel, export_key, time_together


def _net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()


@pytest.mark.parametrize("runtime", ["eager", "onnxruntime"])
def test_models_timed_together_come_back_in_order_and_rank_by_work(runtime):
    small, big = _net(4), _net(96)  # about 500x the MACs in the second conv
    timings = time_together([TimedModel(small, runtime), TimedModel(big, runtime)], input_size=48, in_channels=3,
                            threads=1)
    assert len(timings) == 2 and all(t.runs >= 5 and t.p10_ms <= t.median_ms <= t.p90_ms for t in timings)
    assert timings[0].median_ms < timings[1].median_ms
    assert timings[0].ratio == 1.0 and timings[1].ratio > 1.0  # paired round by round against the first
    assert timings[1].speedup_over(timings[0]) == pytest.approx(1 / timings[1].ratio)


def test_nothing_to_time_is_an_error():
    with pytest.raises(ValueError, match="models"):
        time_together([], input_size=32, in_channels=3)


def test_a_model_timed_again_reuses_its_export_and_a_new_architecture_gets_its_own(tmp_path):
    small = _net(4)
    time_together([TimedModel(small, "onnxruntime")], input_size=32, in_channels=3, threads=1, onnx_dir=tmp_path)
    (first,) = list(tmp_path.glob("*.onnx"))
    stamp = first.stat().st_mtime_ns
    with torch.no_grad():  # new weights, same architecture (a finetune): the export is reused
        small[0].weight.mul_(2)
    time_together([TimedModel(small, "onnxruntime"), TimedModel(_net(8), "onnxruntime")], input_size=32,
                  in_channels=3, threads=1, onnx_dir=tmp_path)
    files = sorted(tmp_path.glob("*.onnx"))
    assert len(files) == 2 and first in files and first.stat().st_mtime_ns == stamp


def test_export_key_follows_the_architecture_not_the_weights():
    net = _net(4)
    key = export_key(net)
    with torch.no_grad():
        net[0].weight.zero_()
    assert export_key(net) == key
    assert export_key(_net(8)) != key
    assert export_key(nn.Sequential(*list(net)[:2], nn.Identity(), *list(net)[2:])) != key


def test_an_onnx_runtime_graph_behind_a_module_does_not_spin_wait(tmp_path):
    """The pipeline times its INT8 graphs (OrtModel) in turn with FP32 sessions that do not spin-wait;
    a spinning one would steal their cores (benchmarks/interleave_identical.py)."""
    from carve.compress.quantization import OrtModel
    from carve.latency.onnx_export import export_onnx

    net = _net(4)
    path = export_onnx(net, tmp_path / "net.onnx", input_size=16)
    model = OrtModel(path, threads=1)
    options = model.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)
