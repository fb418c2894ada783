"""``carve zoo list|info``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from .latency import add_timing_args


def register(sub: argparse._SubParsersAction) -> None:
    zoo = sub.add_parser("zoo", help="list and inspect zoo models")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    p = zsub.add_parser("list", help="models with family, params and MACs at 224 px")
    p.add_argument("pattern", nargs="?", default="*", help="glob over model names")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights, and show them")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)
    p = zsub.add_parser("info", help="spec, params, MACs and feature maps of one model")
    p.add_argument("name", help="registry name, spec file (.json/.yaml) or carve weights file")
    p.add_argument("--size", type=int, default=224, help="input size for MACs (default 224)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--table", action="store_true",
                   help="also print fvcore's per-module table (its totals add BN and elementwise ops)")
    p.set_defaults(func=cmd_info)
    register_bench(zsub)


def cmd_list(args: argparse.Namespace) -> int:
    from carve.zoo import zoo_table

    rows = zoo_table(args.pattern, args.pretrained)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'model':26s} {'family':20s} {'params (M)':>10s} {'MACs (M)':>9s}"
    print(header + ("  published weights (top-1 on their data set; * = pretrained=True)" if args.pretrained else ""))
    for r in rows:
        line = f"{r['name']:26s} {r['family']:20s} {r['params_m']:10.2f} {r['macs_m']:9.1f}"
        if args.pretrained:
            line += "  " + ", ".join(f"{'*' if w['default'] else ''}{w['tag']} "
                                     f"({w['top1'] if w['top1'] is not None else '?'}"
                                     f"{'' if w['dataset'] == 'imagenet-1k' else ' ' + w['dataset']})"
                                     for w in r["weights"])
        print(line)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from carve.zoo import create_model, get_entry, list_models, profile
    from carve.zoo.mobileone import deployed

    model = create_model(args.name)
    prof = profile(deployed(model), args.size)  # as deployed (MobileOne: one conv per block), as papers count
    entry = get_entry(args.name) if args.name in list_models() else None
    info = dict(name=model.spec.name, family=model.spec.family, hash=model.spec.hash(), params=prof.params,
                macs=prof.macs, activations=prof.activations, input_size=args.size,
                feature_info=list(model.feature_info), spec=model.spec.to_dict())
    if entry is not None:
        info["published"] = entry.published.__dict__ if entry.published else None
        info["weights"] = [dict(tag=w.tag, top1=w.top1) for w in entry.weights]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']} ({info['family']}), spec hash {info['hash']}")
    print(f"params {prof.params:,}  MACs {prof.macs / 1e6:.1f} M  activations {prof.activations / 1e6:.2f} M "
          f"at {args.size} px")
    if info.get("published"):
        pub = info["published"]
        print(f"published: {pub['params_m']} M params, {pub['macs_m']} M MACs ({pub['source']})")
    if info.get("weights"):
        print("weights: " + ", ".join(f"{w['tag']} ({w['top1'] if w['top1'] is not None else '?'})"
                                      for w in info["weights"]))
    print("feature maps: " + ", ".join(f"{f['module']} ({f['num_chs']} ch, /{f['reduction']})"
                                       for f in info["feature_info"]))
    print("blocks:")
    cin = model.spec.stem.channels
    for si, stage in enumerate(model.spec.stages):
        for bi, b in enumerate(stage.blocks):
            extra = f" mid {b.mid_channels}" if b.mid_channels else ""
            extra += f" se {b.se.channels}" if b.se else ""
            print(f"  [{si}.{bi}] {b.kind:7s} {cin:4d} -> {b.out_channels:4d} k{b.kernel} s{b.stride} {b.act}{extra}")
            cin = b.out_channels
    if args.table:
        print(fvcore_table(model, args.size))
    return 0


def fvcore_table(model: "torch.nn.Module", size: int, max_depth: int = 2) -> str:
    """fvcore's per-module parameter and FLOP table (FLOPs there include BN and elementwise ops)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore scripts and traces with TorchScript, which torch deprecates
        from fvcore.nn import FlopCountAnalysis, flop_count_table

        analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, model.spec.in_channels, size, size))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        table = flop_count_table(analysis, max_depth=max_depth)
    return "fvcore per-module table (its FLOPs add BN and elementwise ops; not the MAC figure):\n" + table


def register_bench(zsub: argparse._SubParsersAction) -> None:
    p = zsub.add_parser("bench", help="batch latency of zoo models, optionally beside their torchvision/timm twins")
    p.add_argument("names", nargs="*", default=["*"], help="registry names or globs (default: the whole zoo)")
    add_timing_args(p)
    p.add_argument("--vs-peers", action="store_true", help="time each twin interleaved with ours, report ours/twin")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from carve.latency import Protocol
    from carve.latency.zoo_bench import bench_zoo, format_rows

    rows = bench_zoo(args.names, device=args.device, batch=args.batch, input_size=args.size, runtime=args.runtime,
                     threads=args.threads, vs_peers=args.vs_peers, protocol=Protocol(clock=args.clock))
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0
