"""Weights: peer state-dict conversion, local files, peers' published weights, carve safetensors."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .spec import ArchSpec

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class WeightsError(RuntimeError):
    """Weights that cannot be loaded; the message says which file and why."""


class PretrainedUnavailable(WeightsError):
    """Peer weights were asked for but cannot be downloaded here."""


def _is_buffer_count(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def convert_weights(state_dict: Mapping[str, torch.Tensor], source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a torchvision or timm state dict onto a carve model's parameter names.

    ``model`` is the carve model the weights are for. Tensors are matched in order (the zoo
    builds modules in the peers' order) and checked by shape; a linear head stored as a 1x1 conv
    (timm's MobileNetV3 ``conv_head``) is reshaped.
    """
    if source not in ("torchvision", "timm"):
        raise ValueError(f"source: expected 'torchvision' or 'timm', got {source!r}")
    ours = [(k, v) for k, v in model.state_dict().items() if not _is_buffer_count(k)]
    theirs = [(k, v) for k, v in state_dict.items() if not _is_buffer_count(k)]
    if len(ours) != len(theirs):
        raise WeightsError(f"{source} state dict has {len(theirs)} tensors, the carve model expects {len(ours)}: "
                           f"not the same architecture")
    out: dict[str, torch.Tensor] = {}
    for (ok, ov), (tk, tv) in zip(ours, theirs):
        if ov.shape != tv.shape:
            if ov.numel() == tv.numel() and ov.dim() != tv.dim():
                tv = tv.reshape(ov.shape)
            else:
                raise WeightsError(f"{source} tensor {tk} {tuple(tv.shape)} does not fit {ok} {tuple(ov.shape)}")
        out[ok] = tv.detach().clone()
    return out


def matching_peer(state_dict: Mapping[str, torch.Tensor], peers: Mapping[str, str | None]) -> str | None:
    """The source (torchvision, timm) of the twin in ``peers`` (``{"torchvision": "mnasnet1_0", "timm":
    "mnasnet_100"}``) whose state-dict keys are exactly those of ``state_dict``; None when none is."""
    for source, name in peers.items():
        if name and set(_peer_keys(source, name)) == set(state_dict):
            return source
    return None


def peer_source(state_dict: Mapping[str, torch.Tensor], peers: Mapping[str, str | None] | None = None) -> str:
    """Whether a foreign state dict comes from timm or torchvision: the twin in ``peers`` whose key
    names it has exactly, the only twin there is, or else by timm's stem names."""
    peers = peers or {}
    found = matching_peer(state_dict, peers)
    if found is not None:
        return found
    named = [source for source, name in peers.items() if name]
    if len(named) == 1:
        return named[0]
    return "timm" if "conv_stem.weight" in state_dict or "stem.conv.weight" in state_dict else "torchvision"


def _peer_keys(source: str, peer: str) -> list[str]:
    """A peer model's state-dict keys in its own order (built on the meta device: no memory, no download)."""
    with torch.device("meta"):
        if source == "torchvision":
            import torchvision

            return list(getattr(torchvision.models, peer)(weights=None).state_dict())
        import timm

        return list(timm.create_model(peer, pretrained=False).state_dict())


def in_peer_order(state_dict: Mapping[str, torch.Tensor], source: str, peer: str) -> dict[str, torch.Tensor]:
    """Reorder a peer's state dict as the peer model lists it (safetensors files store keys sorted).

    ``peer`` is the torchvision builder or timm model name; a dict whose keys are not exactly the
    peer's is returned unchanged (conversion then reports the mismatch).
    """
    keys = _peer_keys(source, peer)
    if set(keys) != set(state_dict):
        return dict(state_dict)
    return {k: state_dict[k] for k in keys}


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load weights; mismatched keys or shapes raise an error listing them, naming ``origin``."""
    expected = model.state_dict()
    # BatchNorm's step counter matters only with momentum=None; frozen BN layers do not store it
    missing = [k for k in expected if k not in state_dict and not _is_buffer_count(k)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
             for k, v in state_dict.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:10]) + (f" (+{len(keys) - 10} more)" if len(keys) > 10 else "") or "none"

        raise WeightsError(f"{origin}: weights do not match the model. missing keys: {show(missing)}; "
                           f"unexpected keys: {show(unexpected)}; shape mismatches: {show(wrong)}")
    counts = {k: v for k, v in expected.items() if _is_buffer_count(k) and k not in state_dict}
    model.load_state_dict({**counts, **state_dict}, strict=True)


# -- files ---------------------------------------------------------------------------------------

def read_weights_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a .safetensors or torch file; return (state_dict, metadata) where metadata may hold the spec."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors' SafetensorError: empty, truncated or not safetensors
            raise WeightsError(f"{path}: not a readable .safetensors file ({path.stat().st_size} bytes; "
                               f"truncated or corrupt?): {exc}") from None
        meta = {k: _maybe_json(v) for k, v in meta.items()}
        return state, meta
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read as a torch checkpoint ({exc})") from exc
    meta: dict[str, Any] = {}
    if isinstance(obj, dict) and "spec" in obj:
        meta["spec"] = obj["spec"]
    for key in ("model_ema", "ema", "model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            if key in ("model_ema", "ema") and not obj[key]:
                continue
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict (or a checkpoint holding one under 'model')")
    return dict(obj), meta


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def save_weights(model: nn.Module, path: str | Path, metrics: Mapping[str, Any] | None = None,
                 spec: ArchSpec | None = None) -> Path:
    """Save a model as safetensors with its spec and evaluation figures in the metadata (atomic)."""
    from safetensors.torch import save_file

    path = Path(path)
    spec = spec or getattr(model, "spec", None)
    meta = {"format": "carve"}
    if spec is not None:
        meta["spec"] = spec.to_json(indent=None)
    if metrics:
        meta["metrics"] = json.dumps(dict(metrics))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


# -- peers' published weights ---------------------------------------------------------------------

_HOSTS = {"torchvision": "download.pytorch.org", "timm": "huggingface.co"}


def _offline(source: str) -> bool:
    """True when ``CARVE_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) or the peer's host is unreachable."""
    if os.environ.get("CARVE_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return True
    try:
        socket.create_connection((_HOSTS[source], 443), timeout=3).close()
        return False
    except OSError:
        return True


def peer_state_dict(weights: Any) -> dict[str, torch.Tensor]:
    """Fetch a peer's published state dict through the peer's own download mechanism."""
    if _offline(weights.source):
        raise PretrainedUnavailable(
            f"cannot download {weights.tag} for {weights.peer_model}: no network. Download it where you have "
            f"one and pass the local file instead, e.g. create_model(name, pretrained='weights.pth')")
    if weights.source == "torchvision":
        import torchvision

        fn = getattr(torchvision.models, weights.peer_model)
        return fn(weights=weights.tag.split(":", 1)[1]).state_dict()
    import timm

    return timm.create_model(weights.peer_model, pretrained=True).state_dict()
