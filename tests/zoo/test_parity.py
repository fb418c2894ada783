"""Parity with torchvision and timm: same parameters, same MACs, same outputs after convert_weights,
and after loading the peer's checkpoint file through ``create_model(name, pretrained=FILE)``."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from carve.zoo import CarveNet, convert_weights, create_model, profile
from carve.zoo.registry import entries

from .peers import build_peer, randomise_norms

TWINS = [(e.name, source, getattr(e, source)) for e in entries() for source in ("torchvision", "timm")
         if getattr(e, source)]
# Heavy twins whose family is already covered by a lighter member (run them with the slow tests).
HEAVY = {"mobileone_s1", "mobileone_s2", "mobileone_s3", "mobileone_s4", "mobilenet_v4_conv_medium",
         "mobilenet_v4_conv_large"}

# The twins the issue names; the registry must keep all of them (it may add more).
REQUIRED = {
    ("mobilenet_v2_100", "torchvision"), ("mobilenet_v3_small_100", "torchvision"),
    ("mobilenet_v3_large_100", "torchvision"), ("efficientnet_b0", "torchvision"),
    *{(f"shufflenet_v2_{w}", "torchvision") for w in ("050", "100", "150", "200")},
    ("mobilenet_v1_100", "timm"), *{(f"mobilenet_v2_{w}", "timm") for w in ("035", "050", "075", "100", "140")},
    ("mobilenet_v3_large_075", "timm"), ("mobilenet_v3_large_100", "timm"),
    ("mobilenet_v3_small_075", "timm"), ("mobilenet_v3_small_100", "timm"),
    *{(f"rexnet_{w}", "timm") for w in ("100", "130", "150", "200")},
    # the rest of the family tree (issue 20)
    ("squeezenet_1_0", "torchvision"), ("squeezenet_1_1", "torchvision"),
    *{(f"mnasnet_{w}", "torchvision") for w in ("050", "075", "100", "130")},
    *{(f"mnasnet_{w}", "timm") for w in ("050", "075", "100", "small")},
    ("fbnet_c", "timm"), ("efficientnet_v2_b0", "timm"),
    *{(f"mobilenet_v4_conv_{s}", "timm") for s in ("small", "medium", "large")},
    *{(f"mobileone_s{i}", "timm") for i in range(5)},
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


@pytest.mark.parametrize("name, source, peer_name", [
    pytest.param(*t, id=f"{t[0]}-{t[1]}", marks=[pytest.mark.slow] if t[0] in HEAVY else []) for t in TWINS])
def test_same_params_macs_and_outputs(name, source, peer_name, tmp_path):
    peer = build_peer(source, peer_name).eval()
    ours = twin(name, source, peer)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in peer.parameters())
    assert profile(ours, 224).macs == profile(peer, 224).macs

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # float32 with the peer's own initialisation: the criterion
        assert (ours(x) - peer(x)).abs().max().item() <= 1e-5

    randomise_norms(peer)  # BN statistics and eps now matter; float64 removes rounding noise
    # the peer's checkpoint as a file (safetensors stores keys sorted: the loader restores the order)
    path = tmp_path / f"{peer_name}.safetensors"
    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, str(path))
    ours = create_model(name, pretrained=path).double().eval()
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
