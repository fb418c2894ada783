from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from carve.finetune.parameter_efficient import add_peft, merge_peft
from carve.finetune.peft_options import parse_peft
from carve.train import LoopState, build_optimizer, build_scheduler
from carve.train.engine import optimizer_step, trainable_state
from carve.zoo import CarveNet, create_model

CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"


@pytest.fixture(scope="module")
def cifar_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """64 real CIFAR-10 training images (8 per class of the first 8 classes) at 32 px, and labels."""
    if not CIFAR.is_dir():
        pytest.skip(f"cifar10 not found at {CIFAR}")
    images, labels = [], []
    for label, cls in enumerate(sorted(p.name for p in (CIFAR / "train").iterdir())[:8]):
        for f in sorted((CIFAR / "train" / cls).iterdir())[:8]:
            images.append(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255)
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return (x - 0.45) / 0.25, torch.tensor(labels)


def _one_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.5) -> None:
    """One optimizer step of the shared engine on the model's trainable parameters."""
    optimizer = build_optimizer(model, lr, weight_decay=0.0)
    state = LoopState(model, optimizer, build_scheduler(optimizer, 10), torch.device("cpu"), 10)
    model.train()
    optimizer_step(state, nn.functional.cross_entropy(model(x), y))


def _base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen base's tensors under their plain names (peft's ``base_layer.`` taken out)."""
    return {k.replace("base_layer.", ""): v.clone() for k, v in model.state_dict().items()
            if ".lora_" not in k and ".adapter." not in k and not k.startswith("classifier.")
            and "num_batches_tracked" not in k}


@pytest.mark.parametrize("text", ["lora:r=4", "lora:r=2,targets=all", "adapter:reduction=8"])
def test_only_the_method_and_head_train_and_the_base_stays_bit_identical(cifar_batch, text: str) -> None:
    x, y = cifar_batch
    torch.manual_seed(0)
    model = create_model("carve_075", num_classes=8)
    with torch.no_grad():
        before_logits = model.eval()(x[:4])
    info = add_peft(model, parse_peft(text), head=["classifier."])
    with torch.no_grad():  # LoRA's B and the adapters' up-projections start at zero: the base's outputs
        torch.testing.assert_close(model.eval()(x[:4]), before_logits)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("classifier.") or ".lora_" in n or ".adapter." in n for n in trainable)
    assert info.counts["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < info.counts["trainable"] < 0.2 * info.counts["total"]
    if text.startswith("lora"):  # depthwise convs are never targeted; pointwise only 1x1
        for name in info.targets:
            conv = model.get_submodule(name).get_base_layer()
            assert getattr(conv, "groups", 1) == 1
            assert "all" in text or conv.kernel_size == (1, 1)
    base = _base_state(model)
    method = {k: v.clone() for k, v in trainable_state(model).items() if not k.startswith("classifier.")}
    head = model.classifier.weight.detach().clone()
    _one_step(model, x, y)
    after = _base_state(model)
    assert base.keys() == after.keys()
    assert all(torch.equal(base[k], after[k]) for k in base)
    moved = [k for k, v in trainable_state(model).items() if k in method and not torch.equal(v, method[k])]
    assert moved and not torch.equal(model.classifier.weight, head)


def test_merged_lora_equals_unmerged_and_is_a_plain_model(cifar_batch) -> None:
    x, y = cifar_batch
    torch.manual_seed(1)
    model = create_model("carve_075", num_classes=8)
    add_peft(model, parse_peft("lora:r=4,targets=all"), head=["classifier."])
    for _ in range(2):
        _one_step(model, x, y)
    with torch.no_grad():
        unmerged = model.eval()(x)
    merged = merge_peft(model).eval()
    with torch.no_grad():
        out = merged(x)
    assert (out - unmerged).abs().max() < 1e-4
    assert type(merged) is CarveNet and merged.spec == model.spec
    plain = create_model(model.spec)
    plain.load_state_dict(merged.state_dict())  # strict: the same names as the plain model


@pytest.mark.slow  # two ONNX exports
def test_merged_lora_exports_the_plain_models_graph(tmp_path: Path) -> None:
    """No extra latency once deployed: the merged model's ONNX graph has the plain model's operators."""
    import onnx

    from carve.latency.onnx_export import export_onnx

    model = create_model("carve_075", num_classes=8)
    add_peft(model, parse_peft("lora:r=4"), head=["classifier."])
    merged = merge_peft(model)
    plain = create_model(model.spec)
    ops = [[n.op_type for n in onnx.load(str(export_onnx(m.eval(), tmp_path / f"{i}.onnx", 32))).graph.node]
           for i, m in enumerate((merged, plain))]
    assert sorted(ops[0]) == sorted(ops[1])
    unmerged = [n.op_type for n in onnx.load(str(export_onnx(model.eval(), tmp_path / "u.onnx", 32))).graph.node]
    assert len(unmerged) > len(ops[1])  # what merging saves: LoRA's extra convs and adds


def test_adapters_refuse_to_merge_and_peft_twice_is_refused() -> None:
    model = create_model("carve_075", num_classes=4)
    add_peft(model, parse_peft("adapter"), head=["classifier."])
    with pytest.raises(ValueError, match="adapter layers are non-linear"):
        merge_peft(model)
    with pytest.raises(ValueError, match="already has"):
        add_peft(model, parse_peft("lora"), head=["classifier."])
    with pytest.raises(ValueError, match="no parameter-efficient method"):
        merge_peft(create_model("carve_075", num_classes=4))
