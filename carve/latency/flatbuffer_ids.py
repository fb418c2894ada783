"""FlatBuffer file identifiers: the four bytes at offset 4 that name a program's format (``ET12`` for
ExecuTorch, ``TFL3`` for LiteRT), checked before a runtime is given the file."""

from __future__ import annotations

from pathlib import Path


def has_identifier(data: bytes, magic: bytes) -> bool:
    """True when ``data`` starts like a FlatBuffer with the file identifier ``magic``."""
    return len(data) >= 8 and data[4:8] == magic


def check_identifier(path: str | Path, magic: bytes, what: str) -> None:
    """A ``ValueError`` naming ``path`` when the file is not a FlatBuffer with identifier ``magic``."""
    with open(path, "rb") as f:
        if not has_identifier(f.read(8), magic):
            raise ValueError(f"{path}: not {what} (no {magic.decode()} identifier)")
