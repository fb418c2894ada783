"""Command-line flags generated from a config dataclass (``carve.config``).

Every field becomes ``--field-name`` with the field's help, default and choices; a boolean is
``--x``/``--no-x``, a list takes several values, a mapping takes JSON, and a nested config's
fields join the same parser (a name both levels have sets both). ``Flag`` adds the names and
parsers a command has always accepted. ``--config FILE`` reads fields from JSON or YAML; flags
given on the command line override it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Sequence

from carve.config import ConfigError, build, field_settings, field_types, read_mapping

NoneType = type(None)
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_ABSENT = object()


@dataclass(frozen=True)
class Flag:
    """What one field's flag adds to the generated one: more option names, a parser for the text, a metavar."""

    names: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None


def flag(*names: str, parse: Callable[[str], Any] | None = None, metavar: str | None = None) -> Flag:
    return Flag(names, parse, metavar)


def parse_bool(text: str) -> bool:
    """'true'/'yes'/'on'/'1' or 'false'/'no'/'off'/'0'."""
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _bool_or_text(text: str) -> bool | str:
    return text.lower() in TRUE if text.lower() in TRUE + FALSE else text


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _scalar(kinds: Sequence[type], optional: bool) -> Callable[[str], Any]:
    """A parser for text meant as one of ``kinds`` (int before float before str; 'none' for None)."""
    def parse(text: str) -> Any:
        if optional and text.lower() in ("none", "null") and str not in kinds:
            return None
        for kind in (int, float):
            if kind in kinds:
                try:
                    return kind(text)
                except ValueError:
                    pass
        if str in kinds:
            return text
        names = " or ".join("an integer" if k is int else "a number" for k in kinds)
        raise argparse.ArgumentTypeError(f"expected {names}{' or none' if optional else ''}, got {text!r}")
    return parse


class _Switch(argparse.Action):
    """``--x`` sets True, ``--x false`` the value given (where values are allowed), ``--no-x`` False."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string and option_string.startswith("--no-"):
            values = False
        setattr(namespace, self.dest, True if values is None or values == [] else values)


def _leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Mapping[str, Any], Any]]:
    """(path, field, its settings, type) of every field, nested configs flattened."""
    hints, settings = field_types(cls), field_settings(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if not f.init:
            continue
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            yield from _leaves(tp, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f, settings[f.name], tp


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _argument(tp: Any, choices: Any, bool_values: bool) -> dict[str, Any]:
    """argparse keywords for a field of type ``tp``."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    optional = NoneType in args
    kinds = [a for a in args if a is not NoneType]
    origin = typing.get_origin(kinds[0]) or kinds[0]
    if kinds == [bool]:
        return dict(action=_Switch, nargs="?" if bool_values else 0, type=parse_bool, metavar="true|false")
    if len(kinds) == 1 and origin in (list, tuple):
        item = (typing.get_args(kinds[0]) or (str,))[0]
        return dict(action="extend", nargs="+", type=_scalar([item], False) if item in (int, float) else str,
                    choices=choices)
    if len(kinds) == 1 and origin is dict:
        return dict(type=_json_object, metavar="JSON")
    if bool in kinds:
        return dict(nargs="?", const=True, type=_bool_or_text)
    if any(k not in (int, float, str) for k in kinds):  # Any, modules: the text as given
        return dict(type=str)
    return dict(type=_scalar(kinds, optional), choices=choices)


def _put(data: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    data[last] = value


def _get(data: Any, path: str) -> Any:
    for key in re.findall(r"[^.\[\]]+", path):
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            return _ABSENT
    return data


class ConfigFlags:
    """The flags of config class ``cls`` on ``parser``; ``build(args)`` makes the config they describe.

    ``flags``: extra names/parsers per field path (``"objective.accuracy"``); ``positional``: fields
    given as positional arguments; ``required``: fields the command line or the file must give;
    ``bool_values``: booleans also take a value (``--x false``).
    """

    def __init__(self, parser: argparse.ArgumentParser, cls: type, *, flags: dict[str, Flag] | None = None,
                 positional: Sequence[str] = (), required: Sequence[str] = (), bool_values: bool = False):
        self.parser, self.cls = parser, cls
        self.required = tuple(positional) + tuple(required)
        self.targets: dict[str, list[str]] = {}  # argparse dest -> the field paths it sets
        self.shown: dict[str, str] = {}  # field path -> how the command line names it
        parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                            help=f"JSON or YAML file of {cls.__name__} fields (flags override it)")
        groups: dict[str, list[tuple[str, dataclasses.Field, Mapping[str, Any], Any]]] = {}
        for path, f, meta, tp in _leaves(cls):
            groups.setdefault(f.name, []).append((path, f, meta, tp))
        for name, members in groups.items():
            self._add(name, members, flags or {}, positional, bool_values)
        parser.set_defaults(config_flags=self)

    def _add(self, name: str, members: list, flags: dict[str, Flag], positional: Sequence[str],
             bool_values: bool) -> None:
        """One flag (or positional argument) setting the fields ``members`` share a name with."""
        paths = [path for path, _, _, _ in members]
        _, f, meta, tp = members[0]
        extra = next((flags[p] for p in paths if p in flags), Flag())
        option = "--" + name.replace("_", "-")
        kwargs = _argument(tp, meta.get("choices"), bool_values)
        text = meta.get("help", "")
        default = _default(f)
        if default is not dataclasses.MISSING and "default" not in text and not set(paths) & set(self.required):
            text += f" (default: {'none' if default is None else default})"
        if kwargs.get("action") is _Switch:
            text += f"; --no-{option[2:]} for false"
        kwargs.update(help=text.strip().replace("%", "%%"), default=argparse.SUPPRESS)
        if extra.parse is not None:
            kwargs["type"] = extra.parse
        if extra.metavar is not None or not (kwargs.get("choices") or "metavar" in kwargs):
            kwargs["metavar"] = extra.metavar or name.upper()
        if any(p in positional for p in paths):
            dest = name
            self.parser.add_argument(name, nargs="?", type=kwargs["type"], help=kwargs["help"],
                                     default=argparse.SUPPRESS)
            self.shown.update({p: name for p in paths})
        else:
            dest = f"config:{name}"
            self.parser.add_argument(option, *extra.names, dest=dest, **kwargs)
            if kwargs.get("action") is _Switch:
                self.parser.add_argument(f"--no-{option[2:]}", dest=dest, action=_Switch, nargs=0,
                                         default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            self.shown.update({p: option for p in paths})
        self.targets[dest] = paths

    def peek(self, args: argparse.Namespace, name: str) -> Any:
        """What the command line, else the ``--config`` file, gives for the flag ``name`` (None if neither)."""
        dest = name if name in self.targets else f"config:{name}"
        if hasattr(args, dest):
            return getattr(args, dest)
        source = getattr(args, "config", None)
        return read_mapping(source).get(name) if source else None

    def build(self, args: argparse.Namespace, part: str | None = None) -> Any:
        """The config: the fields of the ``--config`` file, then the flags given on the command line.

        ``part``: only the nested config of that field is built (and checked), the ``--config``
        file holding its fields; a command whose flags serve one of several configs picks it so."""
        source = getattr(args, "config", None)
        data = read_mapping(source) if source else {}
        if part is not None:
            data = {part: data}
        from_file = copy.deepcopy(data)
        given: list[str] = []
        for dest, paths in self.targets.items():
            if hasattr(args, dest):
                for path in paths:
                    _put(data, path, getattr(args, dest))
                given += paths
        required = [p for p in self.required if part is None or p.startswith(part + ".")]
        missing = [self.shown.get(p, p) for p in required if _get(data, p) is _ABSENT]
        if missing:
            self.parser.error(f"the following arguments are required: {', '.join(missing)}")
        try:
            if part is not None:
                return build(field_types(self.cls)[part], data[part])
            return build(self.cls, data)
        except ConfigError as exc:
            full = exc.path if part is None else f"{part}.{exc.path}"
            flagged = any(full == p or full.startswith((p + ".", p + "[")) for p in given)
            file_fields = from_file if part is None else from_file[part]
            if source and not flagged and _get(file_fields, exc.path.split(".")[0].split("[")[0]) is not _ABSENT:
                raise ConfigError(exc.path, exc.problem, source=str(source)) from None
            raise


def config_flags(parser: argparse.ArgumentParser, cls: type, **options: Any) -> ConfigFlags:
    """Add ``cls``'s flags (and ``--config``) to ``parser``; see ``ConfigFlags`` for the options."""
    return ConfigFlags(parser, cls, **options)
