"""Parity with torchvision and timm: same parameters, same MACs, same outputs after convert_weights."""

from dataclasses import replace

import pytest
import torch

from carve.zoo import CarveNet, convert_weights, profile
from carve.zoo.registry import entries

from .peers import build_peer, randomise_norms

TWINS = [(e.name, source, getattr(e, source)) for e in entries() for source in ("torchvision", "timm")
         if getattr(e, source)]

# The twins the issue names; the registry must keep all of them (it may add more).
REQUIRED = {
    ("mobilenet_v2_100", "torchvision"), ("mobilenet_v3_small_100", "torchvision"),
    ("mobilenet_v3_large_100", "torchvision"), ("efficientnet_b0", "torchvision"),
    *{(f"shufflenet_v2_{w}", "torchvision") for w in ("050", "100", "150", "200")},
    ("mobilenet_v1_100", "timm"), *{(f"mobilenet_v2_{w}", "timm") for w in ("035", "050", "075", "100", "140")},
    ("mobilenet_v3_large_075", "timm"), ("mobilenet_v3_large_100", "timm"),
    ("mobilenet_v3_small_075", "timm"), ("mobilenet_v3_small_100", "timm"),
    *{(f"rexnet_{w}", "timm") for w in ("100", "130", "150", "200")},
}


def twin(name: str, source: str, peer: torch.nn.Module) -> CarveNet:
    entry = next(e for e in entries() if e.name == name)
    spec = entry.spec()
    if source in entry.peer_norm:
        spec = replace(spec, norm=entry.peer_norm[source])
    ours = CarveNet(spec)
    ours.load_state_dict(convert_weights(peer.state_dict(), source, ours))
    return ours.eval()


def test_registry_keeps_every_required_twin():
    assert REQUIRED <= {(name, source) for name, source, _ in TWINS}


@pytest.mark.parametrize("name, source, peer_name", TWINS, ids=[f"{n}-{s}" for n, s, _ in TWINS])
def test_same_params_macs_and_outputs(name, source, peer_name):
    peer = build_peer(source, peer_name).eval()
    ours = twin(name, source, peer)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in peer.parameters())
    assert profile(ours, 224).macs == profile(peer, 224).macs

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # float32 with the peer's own initialisation: the criterion
        assert (ours(x) - peer(x)).abs().max().item() <= 1e-5

    randomise_norms(peer)  # BN statistics and eps now matter; float64 removes rounding noise
    ours = twin(name, source, peer).double()
    peer = peer.double()
    with torch.no_grad():
        a, b = ours(x.double()), peer(x.double())
    assert b.abs().max().item() > 1e-3  # the comparison is not between two near-zero outputs
    assert (a - b).abs().max().item() <= 1e-9 * max(1.0, b.abs().max().item())


def test_wrong_bn_eps_is_detected():
    """The float64 comparison is sharp enough to see timm's vs torchvision's BN eps."""
    peer = build_peer("timm", "mobilenetv3_small_100").eval()
    randomise_norms(peer)
    entry = next(e for e in entries() if e.name == "mobilenet_v3_small_100")
    ours = CarveNet(entry.spec())  # torchvision's eps 1e-3, not timm's 1e-5
    ours.load_state_dict(convert_weights(peer.state_dict(), "timm", ours))
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        diff = (ours.double().eval()(x) - peer.double()(x)).abs().max().item()
    assert diff > 1e-6
