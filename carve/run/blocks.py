"""The building blocks of the report's content: tables, images and paragraphs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    headers: list[str]
    rows: list[list]
    highlight: set[int] = field(default_factory=set)


@dataclass
class Image:
    path: Path
    caption: str


@dataclass
class Para:
    text: str
    kind: str = ""  # "", "missing" or "note"


Block = Table | Image | Para
