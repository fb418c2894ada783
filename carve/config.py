"""Typed configs: dataclasses whose fields carry their own rules, built from plain data or in Python.

A config derives from ``Config`` and declares each field with ``setting``: a range rule
(``">= 1"``, ``"positive"``, ``"in [0, 1)"``), the enumeration its value must come from
(``choices``) and a help text. The same checks run when the config is built from data
(``build``/``from_dict``: a ``ConfigError`` names the data path, e.g. ``train.epochs``) and when
it is constructed in Python (the error names ``TrainConfig.epochs``). Checks involving several
fields go in the class's ``check`` method.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml

T = TypeVar("T")
NoneType = type(None)


class ConfigError(ValueError):
    """A bad config value. ``path`` names the field (``train.epochs``, ``TrainConfig.epochs``,
    ``compress.steps[1]``), ``problem`` says what was expected and ``source`` names the file it came from."""

    def __init__(self, path: str, problem: str, source: str = "") -> None:
        self.path, self.problem, self.source = path, problem, source
        text = f"{path}: {problem}" if path else problem
        super().__init__(f"{source}: {text}" if source else text)

    def __reduce__(self) -> tuple:
        return ConfigError, (self.path, self.problem, self.source)

    def moved(self, old: str, new: str) -> ConfigError:
        """The same error with the path prefix ``old`` replaced by ``new`` (``""``: the top level)."""
        if self.path != old and not self.path.startswith((old + ".", old + "[")):
            return self
        rest = self.path[len(old):]
        return ConfigError(new + rest if new else rest.lstrip("."), self.problem, self.source)


@dataclasses.dataclass(frozen=True)
class Rule:
    """The range a number must lie in, from text such as ``">= 1"``, ``"positive"`` or ``"in [0, 1)"``."""

    text: str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Rule:
        t = " ".join(text.split())
        if t == "positive":
            return cls(t, 0.0, low_open=True)
        bound = re.fullmatch(r"(>=|>|<=|<) (\S+)", t)
        if bound:
            op, value = bound.group(1), float(bound.group(2))
            if op.startswith(">"):
                return cls(t, low=value, low_open=op == ">")
            return cls(t, high=value, high_open=op == "<")
        interval = re.fullmatch(r"in ([\[(])\s*(\S+?)\s*,\s*(\S+?)\s*([\])])", t)
        if interval:
            left, low, high, right = interval.groups()
            return cls(t, float(low), float(high), left == "(", right == ")")
        raise ValueError(f"rule: expected '>= x', '> x', '<= x', '< x', 'positive' or 'in [a, b)', got {text!r}")

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def expected(self, integer: bool) -> str:
        noun = "integer" if integer else "number"
        return f"a positive {noun}" if self.text == "positive" else f"{'an' if integer else 'a'} {noun} {self.text}"


def setting(default: Any = dataclasses.MISSING, rule: str | None = None, *, choices: Sequence[Any] | None = None,
            help: str = "", default_factory: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field with its rule (see ``Rule``), its choices (the enumeration constant that owns
    them) and its help text (the CLI's too)."""
    metadata: dict[str, Any] = {"help": help}
    if rule is not None:
        metadata["rule"] = Rule.parse(rule)
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata, **kwargs)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of each field of the dataclass ``cls``."""
    return typing.get_type_hints(cls)


@functools.cache
def field_settings(cls: type) -> dict[str, Mapping[str, Any]]:
    """The rule, choices and help of each field of the dataclass ``cls``; a subclass that only
    changes a field's default keeps what its base declared for it."""
    out = {}
    for f in dataclasses.fields(cls):
        declared = (base.__dataclass_fields__.get(f.name) for base in cls.__mro__ if dataclasses.is_dataclass(base))
        out[f.name] = next((d.metadata for d in declared if d is not None and d.metadata), f.metadata)
    return out


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _noun(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        text = " or ".join(_noun(a) for a in args if a is not NoneType)
        return text + (" or null" if NoneType in args else "")
    tp = typing.get_origin(tp) or tp
    nouns = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
             tuple: "a list", dict: "a mapping"}
    return nouns.get(tp, f"a {getattr(tp, '__name__', tp)}")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """``value`` as type ``tp`` (ints as floats, paths as strings, mappings as nested configs), else ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and NoneType in args:
            return None
        alternatives = [a for a in args if a is not NoneType]
        if len(alternatives) == 1:
            return _coerce(value, alternatives[0], path)
        for alternative in alternatives:
            try:
                return _coerce(value, alternative, path)
            except ConfigError:
                pass
        raise ConfigError(path, f"expected {_noun(tp)}, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return build(tp, value, path)
        raise ConfigError(path, f"expected a mapping of {tp.__name__} fields, got {value!r}")
    if (origin or tp) in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(path, f"expected a list of {len(args)} items, got {value!r}")
            items = [_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            items = [_coerce(v, args[0] if args else Any, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if (origin or tp) is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        if not args:
            return value
        return {_coerce(k, args[0], path): _coerce(v, args[1], _join(path, str(k))) for k, v in value.items()}
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(path, f"expected {_noun(tp)}, got {value!r}")
    return value


def _check_rules(value: Any, meta: Mapping[str, Any], path: str) -> None:
    """The field's rule and choices hold for ``value`` (for each item of a list); None always passes."""
    rule, choices = meta.get("rule"), meta.get("choices")
    if value is None or (rule is None and choices is None):
        return
    items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
    for i, item in items:
        where = path if i is None else f"{path}[{i}]"
        if choices is not None and item not in choices:
            raise ConfigError(where, f"expected one of {', '.join(map(str, choices))}, got {item!r}")
        if rule is not None:
            number = isinstance(item, numbers.Real) and not isinstance(item, bool)
            if not (number and rule.holds(item)):
                raise ConfigError(where, f"expected {rule.expected(isinstance(item, int))}, got {item!r}")


def build(cls: type[T], data: Any, where: str = "") -> T:
    """A ``cls`` dataclass from plain data (mappings for nested configs, lists for lists and tuples).

    A bad, unknown or missing field raises ``ConfigError`` naming its path below ``where``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(where or "config", f"expected a mapping of {cls.__name__} fields, got {data!r}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = [f.name for f in fields]
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(_join(where, unknown[0]), f"unknown field; known fields: {', '.join(known)}")
    hints = field_types(cls)
    kwargs = {}
    for f in fields:
        path = _join(where, f.name)
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(path, "missing")
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:
        raise exc.moved(cls.__name__, where) from None
    if not isinstance(obj, Config):  # a plain dataclass: its rules are checked here
        for f in fields:
            _check_rules(getattr(obj, f.name), field_settings(cls)[f.name], _join(where, f.name))
    return obj


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if callable(getattr(value, "to_dict", None)):  # a spec object
        return value.to_dict()
    kind = "module" if hasattr(value, "state_dict") else "object"
    return f"<{type(value).__name__} {kind}>"


class Config:
    """Base of the config dataclasses: fields checked on construction, ``from_dict`` and ``to_dict``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field's type and rule, nested configs included, then ``check``; the first bad
        field raises ``ConfigError`` naming it as ``ClassName.field``."""
        cls = type(self)
        hints, settings = field_types(cls), field_settings(cls)
        for f in dataclasses.fields(self):
            path = f"{cls.__name__}.{f.name}"
            value = _coerce(getattr(self, f.name), hints[f.name], path)
            if isinstance(value, Config):
                try:
                    value.validate()
                except ConfigError as exc:
                    raise exc.moved(type(value).__name__, path) from None
            object.__setattr__(self, f.name, value)
            _check_rules(value, settings[f.name], path)
        self.check()

    def check(self) -> None:
        """Checks across fields; a subclass raises ``self.error(field, problem)``."""

    def error(self, field: str, problem: str) -> ConfigError:
        """The error for ``field`` of this config."""
        return ConfigError(f"{type(self).__name__}.{field}", problem)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from plain data; errors name ``ClassName.field``."""
        return build(cls, data, cls.__name__)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data that ``from_dict`` turns back into this config (a spec object given as
        a value is stored as its dict, a module as ``"<Type module>"``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping of fields in a JSON or YAML file; ConfigError names the file when it holds none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 text (byte offset {exc.start})", source=str(path)) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError("", f"not valid {kind}: {exc}", source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"expected a mapping of fields at the top level, got {type(data).__name__}",
                          source=str(path))
    return data


__all__ = ["Config", "ConfigError", "Rule", "build", "field_settings", "field_types", "read_mapping", "setting"]
