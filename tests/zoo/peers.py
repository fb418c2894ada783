"""Peer (torchvision/timm) models for the parity and weights tests."""

import timm
import torch
import torchvision


# Arguments timm applies itself when it loads these models' published weights.
PEER_KWARGS = {"fbnetc_100": {"bn_eps": 1e-3}}


def build_peer(source: str, peer_name: str, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised torchvision or timm model (no download), built as for its weights."""
    torch.manual_seed(seed)
    if source == "torchvision":
        return getattr(torchvision.models, peer_name)(weights=None)
    return timm.create_model(peer_name, pretrained=False, **PEER_KWARGS.get(peer_name, {}))


def randomise_norms(model: torch.nn.Module, seed: int = 1) -> None:
    """Give every BN non-trivial statistics and affine terms so a wrong mapping or eps shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.1 + 0.02)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
