"""Declarative search spaces: choices over the architecture spec, read from YAML/JSON.

A space file names fixed values or lists of choices per stage (depth, width, stride, kernel,
start_kernel, expansion, act, se) and globally (resolution, activation, se, last_conv). A stage's
``act``/``se`` default to the global choice. ``kernel``, ``start_kernel`` (uib spaces) and
``expansion`` are chosen per block (Once-for-All), the rest per stage. Sampling asks any object with ``suggest_categorical(name, choices)`` (an
Optuna trial, or :class:`RandomTrial`), so every sample is a valid :class:`ArchSpec`.
"""

from __future__ import annotations

from pathlib import Path

from .choices import BLOCKS, FixedParams, RandomTrial, SearchSpace, SpaceError, StageChoice, Suggester
from .parsing import load_space, parse_space
from .subnets import SubnetSpace
from .supernets import SupernetSpace

BUILTIN_DIR = Path(__file__).parent


def list_spaces() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def get_space(name_or_path: str | Path | SearchSpace | SubnetSpace | SupernetSpace
              ) -> SearchSpace | SubnetSpace | SupernetSpace:
    """A built-in space by name (``mbconv``, ``carve``, ``shuffle``, ``mnv4``, ``carve_widths``) or a space file."""
    if isinstance(name_or_path, (SearchSpace, SubnetSpace, SupernetSpace)):
        return name_or_path
    text = str(name_or_path)
    builtin = BUILTIN_DIR / f"{text}.yaml"
    if builtin.is_file():
        return load_space(builtin)
    if Path(text).suffix in (".yaml", ".yml", ".json"):
        return load_space(text)
    raise KeyError(f"unknown search space {text!r}; built-in: {', '.join(list_spaces())}, or a .yaml/.json file")


__all__ = ["BLOCKS", "FixedParams", "RandomTrial", "SearchSpace", "SpaceError", "StageChoice", "SubnetSpace", "Suggester", "SupernetSpace",
           "get_space", "list_spaces", "load_space", "parse_space"]
