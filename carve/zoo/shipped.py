"""Weights that ship with carve: files in ``carve/weights/`` listed in its manifest, loaded offline.

The manifest (``carve/weights/manifest.json``) holds, per tag (e.g. ``carve:tiny-imagenet``) and
model: the file, its sha256, the spec hash, the data set, held-out top-1/top-5, the evaluation
preprocessing, the recipe, the command and seed that produced it, and the training time.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .weights import WeightsError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
MANIFEST = "manifest.json"
ENV_VAR = "CARVE_WEIGHTS_DIR"


class ShippedWeightsError(WeightsError):
    """A shipped weights file is missing or does not match its manifest."""


def weights_dir() -> Path:
    """Where shipped weights live: ``$CARVE_WEIGHTS_DIR``, else the package's ``carve/weights``."""
    return Path(os.environ[ENV_VAR]).expanduser() if os.environ.get(ENV_VAR) else WEIGHTS_DIR


def manifest(folder: str | Path | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{tag: {model name: record}}`` from the manifest (empty when none ships)."""
    path = Path(folder or weights_dir()) / MANIFEST
    return _read(str(path), path.stat().st_mtime_ns) if path.is_file() else {}


@lru_cache(maxsize=4)
def _read(path: str, _mtime: int) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ShippedWeightsError(f"{path}: not a readable weights manifest ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ShippedWeightsError(f"{path}: expected {{tag: {{model: record}}}}")
    return data


def record(tag: str, name: str) -> dict[str, Any]:
    """The manifest record of ``name`` under ``tag``; a clear error when it does not ship."""
    tags = manifest()
    if name not in tags.get(tag, {}):
        shipped = sorted(tags.get(tag, {}))
        raise ShippedWeightsError(f"{name}: no shipped weights {tag!r} in {weights_dir() / MANIFEST}"
                                  + (f"; shipped under it: {', '.join(shipped)}" if shipped else ""))
    return tags[tag][name]


def trained_input_size(path: str | Path) -> int | None:
    """The input size in px the shipped weights file at ``path`` was trained and evaluated at (its
    manifest record's ``eval.input_size``); None for any file the manifest does not list."""
    path = Path(path)
    if not path.is_file() or path.resolve().parent != weights_dir().resolve():
        return None
    for records in manifest().values():
        for rec in records.values():
            if rec.get("file") == path.name:
                size = rec.get("eval", {}).get("input_size")
                return int(size) if size else None
    return None


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shipped_file(tag: str, name: str) -> Path:
    """The weights file of ``name`` under ``tag``, checked against the manifest's sha256."""
    rec = record(tag, name)
    path = weights_dir() / rec["file"]
    if not path.is_file():
        raise ShippedWeightsError(f"{path}: listed in the manifest for {name} ({tag}) but missing")
    if sha256_of(path) != rec["sha256"]:
        raise ShippedWeightsError(f"{path}: sha256 differs from the manifest's: the file is damaged or was "
                                  "replaced; restore it from the repository")
    return path


def publish(model: Any, name: str, tag: str, fields: dict[str, Any], folder: str | Path | None = None) -> dict[str, Any]:
    """Ship ``model``'s weights as ``<name>_<tag suffix>.safetensors`` (fp16, spec in the metadata) in
    ``folder`` (default: ``weights_dir()``) and record it in the manifest with ``fields``; returns the record."""
    from safetensors.torch import save_file

    folder = Path(folder or weights_dir())
    folder.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    file = f"{name}_{tag.split(':')[-1]}.safetensors"
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in model.state_dict().items()}
    meta = {"format": "carve", "spec": spec.to_json(indent=None), "metrics": json.dumps(dict(fields.get("metrics", {})))}
    _replace(folder / file, lambda tmp: save_file(state, str(tmp), metadata=meta))
    rec = dict(fields, file=file, sha256=sha256_of(folder / file), spec_hash=spec.hash(), dtype="float16")
    data = dict(manifest(folder))
    data[tag] = {**data.get(tag, {}), name: rec}
    _replace(folder / MANIFEST, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))
    return rec


def _replace(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)
