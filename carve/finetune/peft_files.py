"""Trainable-only weights files of a parameter-efficient run (safetensors + JSON metadata).

The file holds the method's parameters and the task head; its metadata holds the settings, where
the body sits, the head prefixes, the full model's spec and the frozen base's identity (name, spec
hash, weights SHA-256). Loading adds the method to a freshly built base after checking that the
base is the one the file was trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from carve.train.engine import base_differences, trainable_state

from .parameter_efficient import add_peft, base_identity, peft_info
from .peft_options import parse_peft

FORMAT = "carve-peft-1"


def save_peft(model: nn.Module, path: str | Path, metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s trainable state (see ``add_peft``) and its base identity to ``path`` (atomic)."""
    from safetensors.torch import save_file

    info = peft_info(model)
    if info is None:
        raise ValueError("save_peft: the model has no parameter-efficient method added")
    path = Path(path)
    spec = getattr(model, "spec", None) or (model.get_submodule(info.body).spec if info.body else None)
    meta = dict(format=FORMAT, peft=info.settings.to_text(), body=info.body, head=json.dumps(info.head),
                base=json.dumps(info.base), counts=json.dumps(info.counts), spec=spec.to_json(indent=None))
    if metrics:
        meta["metrics"] = json.dumps(dict(metrics))
    tensors = {k: v.detach().contiguous().cpu() for k, v in trainable_state(model).items()}
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_peft_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a peft weights file, JSON fields decoded; ``ValueError`` names a file of another kind."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: peft weights file not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise ValueError(f"{path}: not a safetensors file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a carve peft weights file (format {meta.get('format')!r}, expected {FORMAT})")
    for key in ("head", "base", "counts", "metrics", "spec"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta


def load_peft(path: str | Path, model: nn.Module) -> nn.Module:
    """Add the method stored in ``path`` to ``model`` (the plain base, built with the task head the
    file expects) and load the trained tensors; returns ``model``.

    Refuses with ``ValueError`` naming the file and what differs when ``model``'s body is not the
    base the file was trained on (another architecture, or other weights), or when the tensors do
    not match (another head size)."""
    from safetensors.torch import load_file

    meta = read_peft_metadata(path)
    body = model.get_submodule(meta["body"]) if meta["body"] else model
    prefix = meta["body"] + "." if meta["body"] else ""
    ours = base_identity(body, [h[len(prefix):] for h in meta["head"] if h.startswith(prefix)])
    differ = base_differences(meta["base"], ours)
    if differ:
        raise ValueError(f"{path}: trained on another base model than the one given: {'; '.join(differ)}")
    settings = parse_peft(meta["peft"], f"{path}: peft")
    add_peft(model, settings, meta["body"], meta["head"])
    tensors = load_file(str(path))
    want = trainable_state(model)
    missing, unexpected = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    shapes = [f"{k} {tuple(tensors[k].shape)} there, {tuple(v.shape)} here" for k, v in want.items()
              if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{path}: its tensors do not fit the model given (missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, shapes {shapes[:3]})")
    model.load_state_dict(tensors, strict=False)
    return model
