"""Hard-swish rewritten for INT8 kernels: the same function, under the same module names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from carve.latency.integer_activations import IntegerHardswish, split_hardswish, with_integer_hardswish
from carve.latency.onnx_export import export_onnx, onnx_session
from carve.latency.qdq import name_nodes
from carve.zoo import create_model, parse_spec

from .test_litert import RESIDUAL


def test_integer_hardswish_is_hardswish_under_the_same_names() -> None:
    model = create_model(parse_spec(RESIDUAL)).eval()
    swapped = with_integer_hardswish(model)
    assert not any(isinstance(m, torch.nn.Hardswish) for m in swapped.modules())
    hardswish = sum(isinstance(m, torch.nn.Hardswish) for m in model.modules())  # the caller's model is left alone
    assert hardswish == 6 and sum(isinstance(m, IntegerHardswish) for m in swapped.modules()) == 6  # stem, 2 per block, head
    assert [n for n, _ in swapped.named_modules()] == [n for n, _ in model.named_modules()]
    x = torch.randn(2, 3, 32, 32) * 4
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), model(x), rtol=1e-5, atol=1e-6)
    relu = create_model(parse_spec(dict(RESIDUAL, stem=dict(channels=16, act="relu"), head=dict(num_classes=10),
                                        stages=[[dict(kind="ir", out_channels=16, stride=1, act="relu")]])))
    assert with_integer_hardswish(relu) is relu  # nothing to replace: not copied


def test_split_hardswish_keeps_the_onnx_function_and_each_node_module(tmp_path: Path) -> None:
    import onnx

    model = create_model(parse_spec(RESIDUAL)).eval()
    path = export_onnx(model, tmp_path / "m.onnx", input_size=32)
    proto = onnx.load(str(path))
    hardswish_modules = sorted({m for n, m in name_nodes(path, tmp_path / "named.onnx").items() if "/HardSwish_" in n})
    assert split_hardswish(proto.graph) == 6
    assert split_hardswish(proto.graph) == 0  # nothing left to rewrite
    assert "HardSwish" not in {n.op_type for n in proto.graph.node}
    onnx.checker.check_model(proto)
    split = tmp_path / "split.onnx"
    onnx.save(proto, str(split))
    modules = name_nodes(split, split)
    assert sorted({m for n, m in modules.items() if "/Clip_" in n}) == hardswish_modules  # keep_float still finds them
    x = (torch.randn(1, 3, 32, 32) * 4).numpy()
    run = lambda p: onnx_session(p, 1).run(None, {onnx_session(p, 1).get_inputs()[0].name: x})[0]  # noqa: E731
    np.testing.assert_allclose(run(split), run(path), rtol=1e-5, atol=1e-5)
