"""The ``carve`` command: a thin argument layer over the library API, one module per stage."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

# Every module of this package that defines ``register(subparsers)`` is a command; heavy imports
# stay inside the command functions. Listed commands come first, in pipeline order.
ORDER = ["zoo", "latency", "train", "eval", "search", "finetune", "compress", "export", "run"]


def command_modules() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carve", description="Lightweight vision backbones: zoo, search, "
                                     "train, finetune, compress.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"carve.cli.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:  # OSError: a file or folder, named in the message
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"carve {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
