"""``carve run``: the main job on embedded defaults, one run folder, a report at the end."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="zoo -> search -> train -> finetune -> compress -> report, in one run folder")
    p.add_argument("--config", help="YAML file merged over the embedded defaults (carve/run/default.yaml)")
    p.add_argument("--steps", help="comma-separated subset: zoo,search,train,finetune,compress,report (default all)")
    p.add_argument("--out", help="run folder (default runs/<config name>); finished steps in it are skipped")
    p.add_argument("--tiny", action="store_true", help="tiny data subsets, two trials, one epoch (a smoke run)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from carve.run import load_config, parse_steps, run_pipeline
    from carve.run.config import dump_config

    cfg = load_config(args.config, tiny=args.tiny)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    outcome = run_pipeline(cfg, args.out, parse_steps(args.steps))
    report = outcome.root / "report" / "report.html"
    if report.is_file():
        print(f"report: {report}")
    for step, reason in outcome.failed.items():
        print(f"not done: {step}: {reason}")
    return 0 if outcome.ok else 1
