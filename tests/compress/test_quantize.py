import pytest
import torch

from carve.compress import QuantizeError, quantize
from carve.compress import state_size
from carve.compress.step_runner import graph_bytes
from carve.compress.quantization import Int8Model, OrtModel
from carve.zoo import create_model

from .conftest import cifar_batches


def _agreement(a, b, batches):
    with torch.no_grad():
        same = sum((a(x).argmax(1) == b(x).argmax(1)).sum().item() for x, _ in batches)
    return same / sum(len(y) for _, y in batches)


@pytest.mark.parametrize("calibration", ["minmax", "percentile"])
def test_int8_onnxruntime_agrees_with_fp32_on_real_images(trained_tiny, tmp_path, calibration):
    model, _, _ = trained_tiny
    calib, test = cifar_batches("train", 10, 50), cifar_batches("test", 10, 50)
    q, spec = quantize(model, calib=calib, runtime="onnxruntime", out_dir=tmp_path, calib_images=100,
                       calibration=calibration)
    assert isinstance(q, OrtModel) and spec == model.spec
    assert (tmp_path / "model_int8.onnx").stat().st_size < 0.6 * (tmp_path / "model_fp32.onnx").stat().st_size
    assert _agreement(model, q, test) >= 0.85


def test_int8_pt2e_agrees_with_fp32_on_real_images(trained_tiny):
    model, _, _ = trained_tiny
    calib, test = cifar_batches("train", 5, 50), cifar_batches("test", 5, 50)
    q, _ = quantize(model, calib=calib, runtime="torch", calib_images=50, compile=False)
    assert isinstance(q, Int8Model) and q.eval() is q  # exported graphs refuse .eval(); the wrapper must not
    names = {str(n.target) for n in q.converted.graph.nodes}
    assert any("quantize_per_tensor" in t for t in names)  # really quantized
    assert _agreement(model, q, test) >= 0.85
    assert graph_bytes(q) < 0.5 * state_size(model)  # int8 weights, not fp32 ones


def test_int8_pt2e_runs_at_image_sizes_other_than_its_calibration(trained_tiny):
    """Calibrated on 32 px images, the compiled INT8 graph runs at 48 px too and agrees with FP32 there."""
    model, _, _ = trained_tiny
    calib = cifar_batches("train", 5, 50)
    q, _ = quantize(model, calib=calib, runtime="torch", calib_images=50)
    test = [(torch.nn.functional.interpolate(x, size=48, mode="bilinear"), y) for x, y in cifar_batches("test", 2, 50)]
    assert _agreement(model, q, test) >= 0.85


@pytest.mark.slow
def test_the_aoti_package_runs_at_the_size_it_was_packaged_for(trained_tiny, tmp_path):
    """Calibrated at 32 px, packaged for 48 px: the loaded package computes what the graph does at 48 px."""
    from carve.compress import package_aoti

    model, _, _ = trained_tiny
    q, _ = quantize(model, calib=cifar_batches("train", 1, 10), runtime="torch", calib_images=10, compile=False)
    x = torch.nn.functional.interpolate(cifar_batches("test", 1, 4)[0][0][:1], size=48, mode="bilinear")
    path = package_aoti(q, tmp_path / "int8.pt2", example=x)
    with torch.no_grad():
        got, want = torch._inductor.aoti_load_package(str(path))(x), q.converted(x)
    assert got.shape == want.shape == (1, 10)
    assert (got - want).abs().max() <= 0.05 * want.abs().max()


def test_int8_pt2e_of_a_model_that_fixes_its_size_names_the_size_it_takes():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10)).eval()
    q, _ = quantize(model, calib=[torch.randn(2, 3, 32, 32)], runtime="torch", calib_images=2, compile=False)
    assert q(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(QuantizeError, match="exported from 32x32 images, does not run at 48x48"):
        q(torch.randn(1, 3, 48, 48))


def test_bf16_cast_runs_close():
    model = create_model("mobilenet_v3_small_075", num_classes=10).eval()
    b, _ = quantize(model, precision="bf16", device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (b(x) - model(x)).abs().max() < 0.1 * max(1.0, model(x).abs().max().item())


def test_bad_quantization_requests_are_clear():
    model = create_model("mobilenet_v3_small_075", num_classes=10)
    with pytest.raises(QuantizeError, match="calib"):
        quantize(model, calib=None)
    with pytest.raises(QuantizeError, match="calib"):
        quantize(model, calib=[])
    with pytest.raises(QuantizeError, match="precision"):
        quantize(model, precision="int4")
    with pytest.raises(QuantizeError, match="runtime"):
        quantize(model, runtime="tflite", calib=[torch.zeros(1, 3, 32, 32)])
    with pytest.raises(QuantizeError, match="calibration"):
        quantize(model, runtime="onnxruntime", calib=[torch.zeros(1, 3, 32, 32)], calibration="kl")


def test_int8_pt2e_copies_keep_the_compiled_kernels(trained_tiny):
    """The latency engine times a deep copy: it must run the frozen INT8 kernels, not the bare graph."""
    import copy

    model, _, _ = trained_tiny
    calib = cifar_batches("train", 1, 10)
    q, _ = quantize(model, calib=calib, runtime="torch", calib_images=10)
    clone = copy.deepcopy(q)
    assert isinstance(q._compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert clone._compiled is q._compiled and clone.converted is q.converted
    x = calib[0][0][:1]
    with torch.no_grad():
        assert torch.equal(clone(x), q(x))
