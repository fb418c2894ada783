"""ExecuTorch (XNNPACK) in the latency engine: a .pte program timed with the protocol, parity on real images."""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.latency import QUICK, measure
from carve.latency.artefact import open_artefact
from carve.latency.executorch_runtime import export_pte, is_pte
from carve.latency.parity import check_parity
from carve.zoo import parse_spec

from .test_openvino import TINY, cifar_images, tiny_model


@pytest.mark.slow  # torch.export and XNNPACK lowering: ~35 s on the shared 2-core machine
def test_executorch_program_matches_pytorch_on_real_images(tmp_path: Path) -> None:
    model = tiny_model()
    path = export_pte(model, tmp_path / "tiny.pte", input_size=32)
    assert is_pte(path.read_bytes()) and not is_pte(b"\x80\x04\x95pickle")
    art = open_artefact(path, threads=1)
    assert art.runtime == "executorch" and art.input_shape == (1, 3, 32, 32)
    p = check_parity(model, art.run, cifar_images())
    assert p.images == 20 and p.top1_agreement == 1.0 and 0 < p.max_abs_diff < 1e-3, p
    with pytest.raises(ValueError, match="ExecuTorch runs .pte files only"):
        open_artefact(path, "openvino")
    fake = tmp_path / "fake.pte"
    fake.write_bytes(b"not a program at all")
    with pytest.raises(ValueError, match="fake.pte: not an ExecuTorch program"):
        open_artefact(fake)


def test_measure_in_executorch_is_cached_by_its_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    spec = parse_spec(TINY)
    kw = dict(input_size=32, threads=1, protocol=QUICK, cache=tmp_path / "lat.db")
    r = measure(spec, runtime="executorch", **kw)
    assert r.median_ms > 0 and r.runs >= QUICK.min_runs and r.conditions["pte_file"].endswith(".pte")
    assert r.fingerprint["executorch"] == version("executorch") and not r.cached
    assert measure(spec, runtime="executorch", **kw).cached


@pytest.mark.slow  # two torch.export + XNNPACK lowerings with PT2E calibration: ~1 min here
def test_executorch_int8_keeps_matching_modules_in_float(tmp_path: Path) -> None:
    from executorch.exir._serialize._program import deserialize_pte_binary

    model = tiny_model()
    images = cifar_images()
    calib = [x[None] for x in images[0][0][:16]]
    int8 = export_pte(model, tmp_path / "int8.pte", input_size=32, calib=calib)
    kept = export_pte(model, tmp_path / "kept.pte", input_size=32, calib=calib, keep_float=["*.se"])

    def quantized(path: Path) -> int:  # XNNPACK stores a per-channel INT8 weight (or bias) with a scale_ entry
        return sum(k.startswith("scale_") for k in deserialize_pte_binary(path.read_bytes()).named_data.pte_data)

    assert quantized(kept) == quantized(int8) - 4  # the SE block's two convolutions: weights and biases
    p = check_parity(model, open_artefact(kept).run, images)
    assert p.top1_agreement >= 0.8 and 1e-4 < p.max_abs_diff < 1.0, p
