import json

import pytest
import torch
from onnxruntime.quantization import calibrate

from carve.latency import qdq
from carve.zoo import create_model, parse_spec

# two inverted-residual blocks: exports in about 2 s, where mobilenet_v3_small_075 took 7-12
SMALL = dict(name="calib_small", family="test", stem=dict(channels=8, stride=2),
             stages=[[dict(kind="ir", out_channels=8, expansion=2), dict(kind="ir", out_channels=16, expansion=2, stride=2)]],
             head=dict(num_classes=10))


def _calibrate(tmp_path, images, chunk, calibration, monkeypatch):
    calls = []
    for cls in (calibrate.MinMaxCalibrater, calibrate.HistogramCalibrater):
        real = cls.collect_data

        def counted(self, reader, _real=real):
            calls.append(1)
            return _real(self, reader)

        monkeypatch.setattr(cls, "collect_data", counted)
    monkeypatch.setattr(qdq, "CALIBRATION_CHUNK", chunk)
    torch.manual_seed(0)
    model = create_model(parse_spec(SMALL)).eval()
    graph = qdq.QdqGraph(model, images, tmp_path, calibration=calibration)
    graph.calibrate()
    monkeypatch.undo()
    return json.loads(graph.cache.read_text()), len(calls)


@pytest.mark.parametrize("calibration", ["minmax", "percentile"])
def test_calibration_runs_in_chunks_and_minmax_ranges_do_not_depend_on_them(tmp_path, monkeypatch, calibration):
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(1, 3, 32, 32, generator=g) * (1 + i) for i in range(10)]  # ranges that differ per image
    whole, whole_calls = _calibrate(tmp_path / "whole", images, 100, calibration, monkeypatch)
    chunked, chunked_calls = _calibrate(tmp_path / "chunked", images, 3, calibration, monkeypatch)
    assert (whole_calls, chunked_calls) == (1, 4)  # 10 images: 3 + 3 + 3 + 1
    assert whole.keys() == chunked.keys()
    if calibration == "minmax":  # min and max merge exactly; histograms re-bin, so percentiles move a little
        assert chunked == whole
