"""Shared fixtures for the compress tests: small real CIFAR-10 batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10"
FAMILIES = ["mobilenet_v1_100", "mobilenet_v2_100", "mobilenet_v3_large_100", "mobilenet_v3_small_100",
            "shufflenet_v2_100", "efficientnet_b0", "rexnet_100", "carve_100"]


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give BatchNorms non-trivial statistics so folding and slicing are really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
    return model


def cifar_dir() -> Path:
    path = Path("/work/shared/data/cifar10")
    if not path.is_dir():
        path = CIFAR.resolve()
    if not path.is_dir():
        pytest.skip("CIFAR-10 not found at ../shared/data/cifar10")
    return path


def cifar_batches(split: str, per_class: int, batch_size: int = 50, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``per_class`` real images of each CIFAR-10 class as normalised tensors, in shuffled batches."""
    from PIL import Image

    root = cifar_dir() / split
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    xs, ys = [], []
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.247, 0.243, 0.261]).view(3, 1, 1)
    for ci, c in enumerate(classes):
        files = sorted((root / c).iterdir())[:per_class]
        for f in files:
            img = torch.frombuffer(bytearray(Image.open(f).convert("RGB").tobytes()), dtype=torch.uint8)
            xs.append((img.view(32, 32, 3).permute(2, 0, 1).float() / 255 - mean) / std)
            ys.append(ci)
    x, y = torch.stack(xs), torch.tensor(ys)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]


TINY_SPEC = {
    "name": "tiny", "family": "carve", "stem": {"channels": 16, "stride": 1, "act": "relu"},
    "stages": [[{"kind": "ir", "out_channels": 24, "stride": 2, "expansion": 3, "act": "relu"},
                {"kind": "ir", "out_channels": 24, "expansion": 3, "act": "relu"}],
               [{"kind": "ir", "out_channels": 40, "stride": 2, "expansion": 4, "act": "relu", "se": {"ratio": 0.25}},
                {"kind": "ir", "out_channels": 48, "expansion": 4, "act": "relu", "skip": "partial"}],
               [{"kind": "ir", "out_channels": 64, "stride": 2, "expansion": 4, "act": "relu"}]],
    "head": {"conv_channels": 128, "dropout": 0.0, "num_classes": 10},
}


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """A 70k-parameter net trained briefly on real CIFAR-10 through carve.train (about 35% top-1)."""
    import json

    from carve.train import TrainConfig, fit

    root = cifar_dir()
    out = tmp_path_factory.mktemp("tiny")
    spec_file = out / "tiny.json"
    spec_file.write_text(json.dumps(TINY_SPEC))
    torch.set_num_threads(1)
    cfg = TrainConfig(model=str(spec_file), data=str(root), out_dir=str(out / "train"), epochs=5, batch_size=50,
                      lr=1.0, train_per_class=100, val_per_class=20, cutmix_alpha=0.0, label_smoothing=0.0,
                      warmup_epochs=0.2, aug="none", workers=0, progress=False, tensorboard=False)
    result = fit(cfg)
    return result.model.cpu().eval(), Path(result.out_dir) / "final.safetensors", result.final_top1
