"""The ``carve`` command: a thin argument layer over the library API, one module per stage."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines ``register(subparsers)``; heavy imports stay inside the command functions.
COMMAND_MODULES = ["zoo", "search", "train"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carve", description="Lightweight vision backbones: zoo, search, "
                                     "train, finetune, compress.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"carve.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"carve {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
