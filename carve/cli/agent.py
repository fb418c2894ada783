"""``carve agent --port P --token T``: time uploaded ONNX / OpenVINO IR files on this device."""

from __future__ import annotations

import argparse
import os

from .flags import config_flags


def register(sub: argparse._SubParsersAction) -> None:
    from carve.latency.agent import AgentConfig

    p = sub.add_parser("agent", help="serve latency measurements of uploaded ONNX/OpenVINO files on this device",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config_flags(p, AgentConfig)
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=cmd_agent)


def cmd_agent(args: argparse.Namespace) -> int:
    from carve.latency.agent import serve
    from carve.latency.remote import TOKEN_ENV

    cfg = args.config_flags.build(args)
    serve(cfg, cfg.token or os.environ.get(TOKEN_ENV, ""), verbose=args.verbose)
    return 0
