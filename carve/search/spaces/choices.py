"""How a space asks for its choices: from an Optuna trial, at random, or from a finished trial's params."""

from __future__ import annotations

import random
from typing import Any, Protocol


class SpaceError(ValueError):
    """An invalid search space; the message names the field and what was expected."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class RandomTrial:
    """Answers ``suggest_categorical`` at random (seeded) and records the params, like a trial."""

    def __init__(self, seed: int | random.Random = 0):
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.params[name] = self.rng.choice(list(choices))
        return self.params[name]


class FixedParams:
    """Answers ``suggest_categorical`` from a params dict (decoding a finished trial)."""

    def __init__(self, params: dict[str, Any]):
        self.params = dict(params)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        if name not in self.params:
            raise SpaceError(name, f"missing from the trial's params (choices {list(choices)})")
        value = self.params[name]
        if value not in list(choices):
            raise SpaceError(name, f"value {value!r} is not one of the space's choices {list(choices)}")
        return value


def _ask(trial: Suggester, name: str, choices: tuple) -> Any:
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))


def _closest(choices: tuple, value: Any) -> Any:
    """The choice equal to ``value``, else the numerically nearest one (the first on a tie)."""
    if value in choices:
        return value
    numeric = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
        return min(numeric, key=lambda c: abs(c - value))
    return choices[0]
