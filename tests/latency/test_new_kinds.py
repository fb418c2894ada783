"""Latency-table parts for the later block kinds: the parts chain back into the whole network,
sizes follow each kind's stride carrier, and earlier specs keep their part keys."""

from __future__ import annotations

import json

import pytest
import torch

from carve.latency.parts import decompose, part_modules
from carve.zoo import create_model, get_entry, parse_spec

from tests.zoo.specs import EVERY_KIND


@pytest.mark.parametrize("spec", [parse_spec(EVERY_KIND), get_entry("squeezenet_1_1").spec().with_num_classes(10),
                                  get_entry("mobilenet_v4_conv_small").spec().with_num_classes(10)],
                         ids=["every_kind", "squeezenet_1_1", "mobilenet_v4_conv_small"])
def test_parts_chain_into_the_deployed_network(spec) -> None:
    torch.manual_seed(0)
    net = create_model(spec).eval()
    torch.manual_seed(0)
    mods = part_modules(spec)
    parts = decompose(spec, 48)
    assert len(parts) == len(mods) == len(spec.blocks) + 2
    with torch.inference_mode():
        x = torch.randn(1, 3, 48, 48)
        y = x
        for part, mod in zip(parts, mods):
            assert y.shape[1:] == (part.in_channels, part.feature_size, part.feature_size), part.key
            y = mod(y)
        ref = net(x)
    assert torch.allclose(y, ref, atol=1e-4 * max(1.0, ref.abs().max().item()))
    # MobileOne parts are timed deployed: one conv each, no branches
    for mod in mods:
        for m in mod.modules():
            if hasattr(m, "reparam_conv"):
                assert m.reparam_conv is not None


def test_later_fields_key_only_the_parts_that_use_them() -> None:
    old = [json.loads(p.key) for p in decompose(create_model("mobilenet_v2_100").spec, 224)]
    later = {"start_kernel", "end_kernel", "groups", "first_groups", "branches", "norm", "pooling", "fc_norm",
             "classifier", "pad"}
    assert all(not later & set(k) for k in old)
    uib = [json.loads(p.key) for p in decompose(parse_spec(EVERY_KIND), 224) if '"uib"' in p.key]
    assert uib[0]["start_kernel"] == 3 and "end_kernel" not in uib[0] and uib[1]["end_kernel"] == 3


def test_onnx_export_runs_mobileone_deployed_and_matches(tmp_path) -> None:
    import onnx

    from carve.latency.onnx_export import export_onnx, onnx_session
    from carve.zoo.mobileone import deployed

    torch.manual_seed(0)
    model = create_model(EVERY_KIND).eval()
    path = export_onnx(model, tmp_path / "every.onnx", input_size=32)
    assert model.stem.reparam_conv is None  # the caller's model keeps its training branches
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node)
    assert convs == sum(isinstance(m, torch.nn.Conv2d) for m in deployed(model).modules())
    assert convs < sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    x = torch.randn(1, 3, 32, 32)
    session = onnx_session(path, threads=1)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x)
    assert abs(torch.from_numpy(out) - ref).max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def test_squeezenet_exports_with_ceil_pools(tmp_path) -> None:
    from carve.latency.onnx_export import export_onnx, onnx_session

    model = create_model("squeezenet_1_1", num_classes=10).eval()
    path = export_onnx(model, tmp_path / "sq.onnx", input_size=67)  # odd sizes exercise the ceil rounding
    x = torch.randn(1, 3, 67, 67)
    session = onnx_session(path, threads=1)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), model(x), atol=1e-5)
