"""The program formats that only their own runtime runs: ExecuTorch ``.pte`` and LiteRT ``.tflite``
FlatBuffers, each known by its file identifier (the four bytes at offset 4), checked before a
runtime is given the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProgramFormat:
    """One FlatBuffer program format: the runtime that runs it, its file suffix and identifier."""

    runtime: str
    label: str  # the runtime's name in messages
    suffix: str
    magic: bytes
    what: str  # the file in messages ("an ExecuTorch program")

    def matches(self, data: bytes) -> bool:
        """True when ``data`` starts like a FlatBuffer with this format's identifier."""
        return len(data) >= 8 and data[4:8] == self.magic

    def check(self, path: str | Path) -> None:
        """A ``ValueError`` naming ``path`` when the file is not of this format."""
        with open(path, "rb") as f:
            if not self.matches(f.read(8)):
                raise ValueError(f"{path}: not {self.what} (no {self.magic.decode()} identifier)")


PROGRAMS = {p.runtime: p for p in (ProgramFormat("executorch", "ExecuTorch", ".pte", b"ET12", "an ExecuTorch program"),
                                   ProgramFormat("litert", "LiteRT", ".tflite", b"TFL3", "a LiteRT model"))}


def program_of(data: bytes) -> ProgramFormat | None:
    """The program format ``data`` starts like, or None."""
    return next((p for p in PROGRAMS.values() if p.matches(data)), None)
