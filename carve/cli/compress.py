"""``carve compress CKPT|NAME --fold-bn --prune 0.3 --quantize int8 --runtime torch --export onnx ...``."""

from __future__ import annotations

import argparse
import json

from .flags import config_flags, flag


def register(sub: argparse._SubParsersAction) -> None:
    from carve.compress.config import CompressConfig

    p = sub.add_parser("compress", help="fold, prune, factorise, quantize and export a model, with a report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config_flags(p, CompressConfig, positional=("model",),
                 flags={"prune": flag(metavar="RATIO"), "prune_macs": flag(metavar="FRACTION"),
                        "lowrank": flag(metavar="ENERGY"), "keep_if_faster": flag(metavar="X")})
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int:
    from carve.compress import compress

    report = compress(args.config_flags.build(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.markdown())
        print("written: " + ", ".join(report.files.values()))
    return 0
