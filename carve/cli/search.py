"""``carve search run|show|plot|export|spaces``."""

from __future__ import annotations

import argparse
import json
import re

from .flags import config_flags, flag

_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_ms(text: str) -> float:
    """'12ms', '12', '0.5s' -> milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"expected a latency like 12ms or 0.012s, got {text!r}")
    value = float(m.group(1))
    return value * 1e3 if m.group(2) == "s" else value


def parse_count(text: str) -> float:
    """'300M', '2.5m', '1e6', '3G' -> a count."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"expected a count like 300M or 2.5M, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def _storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite file in --out)")
    p.add_argument("--out", default="runs/search", help="run folder (default runs/search)")


def register(sub: argparse._SubParsersAction) -> None:
    from carve.search.config import SearchConfig

    search = sub.add_parser("search", help="hardware-aware architecture search (Optuna / Ray)")
    ssub = search.add_subparsers(dest="search_command", required=True, metavar="ACTION")

    p = ssub.add_parser("run", help="run or resume a search")
    config_flags(p, SearchConfig, flags={
        "objective.accuracy": flag("--objective"), "out_dir": flag("--out"), "timeout_s": flag("--timeout"),
        "latency_budget_ms": flag("--latency-budget", parse=parse_ms),
        "macs_budget": flag(parse=parse_count), "params_budget": flag(parse=parse_count),
        "ray_address": flag("--address"), "warm_start": flag(metavar="MODEL"),
        "objective.bn_recalibration": flag(metavar="BATCHES")})
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = ssub.add_parser("show", help="Pareto table of a study")
    p.add_argument("study")
    _storage_args(p)
    p.add_argument("--all", action="store_true", help="list every trial, failed ones with their error")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = ssub.add_parser("plot", help="accuracy vs latency PNG with zoo reference points")
    p.add_argument("study")
    _storage_args(p)
    p.add_argument("-o", "--output", default="pareto.png")
    p.add_argument("--zoo", nargs="*", default=None,
                   help="zoo models to score the same way (default: a few; pass none to skip)")
    p.set_defaults(func=cmd_plot)

    p = ssub.add_parser("export", help="write a trial's spec as arch.json (create_model builds it); from a "
                                          "supernet search also its weights, finetuned with the supernet as teacher")
    p.add_argument("study")
    _storage_args(p)
    p.add_argument("--trial", type=int, default=None, help="trial number (default: most accurate Pareto trial)")
    p.add_argument("-o", "--output", default="arch.json")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--weights", default=None, metavar="PATH.safetensors",
                   help="supernet searches: also write the sub-network's weights here (its spec beside it)")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="with --weights: finetune this long, the supernet's largest sub-network as KD teacher")
    p.add_argument("--lr", type=float, default=0.005, help="finetune learning rate per 256 images")
    p.add_argument("--train-per-class", type=int, default=0, help="finetune images per class (0: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data", default=None, help="BatchNorm re-estimation and finetune data (default: the search's)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_export)

    p = ssub.add_parser("spaces", help="list built-in search spaces")
    p.set_defaults(func=cmd_spaces)


def _storage(args: argparse.Namespace) -> str:
    from carve.search import SearchConfig

    return SearchConfig(out_dir=args.out, storage=args.storage).storage_url


def cmd_run(args: argparse.Namespace) -> int:
    from carve.search import run_search
    from carve.search.pareto import format_table

    cfg = args.config_flags.build(args)
    result = run_search(cfg)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    print(f"study {result.study_name} in {result.storage}: {result.n_complete} complete, {result.n_failed} failed")
    print(format_table(result.pareto) if result.pareto else "no feasible trial yet")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from carve.search.storage import load_study
    from carve.search.pareto import format_table, pareto_entries
    from carve.search.storage import count_states

    study = load_study(args.study, _storage(args))
    entries = pareto_entries(study)
    remeasured = study.user_attrs.get("remeasured_ms", {})
    for e in entries:
        e.remeasured_ms = remeasured.get(str(e.number))
    done, failed = count_states(study)
    if args.json:
        print(json.dumps(dict(study=args.study, complete=done, failed=failed,
                              pareto=[e.as_dict() for e in entries]), indent=2))
        return 0
    print(f"study {args.study}: {done} complete, {failed} failed; Pareto set ({len(entries)}):")
    print(format_table(entries))
    if args.all:
        print("\nall trials:")
        for t in study.get_trials(deepcopy=False):
            ua = t.user_attrs
            extra = ua.get("error") or ua.get("skipped") or ""
            acc, lat = ua.get("accuracy"), ua.get("latency_ms")
            print(f"{t.number:5d} {t.state.name:9s} acc={acc if acc is None else round(acc, 4)} "
                  f"lat={lat if lat is None else round(lat, 3)} {extra}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from carve.search.storage import load_study
    from carve.search.plot import plot_study
    from carve.search.references import DEFAULT_REFERENCES, score_references

    study = load_study(args.study, _storage(args))
    names = list(DEFAULT_REFERENCES) if args.zoo is None else [n for n in args.zoo if n != "none"]
    refs = score_references(study, names, args.out) if names else {}
    path = plot_study(study, args.output, refs)
    print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from carve.search import export_spec

    if args.weights:
        return _export_winner(args)
    spec = export_spec(args.study, _storage(args), args.trial, args.output, args.num_classes)
    print(f"wrote {args.output}: {spec.name} ({len(spec.blocks)} blocks, hash {spec.hash()})")
    return 0


def _export_winner(args: argparse.Namespace) -> int:
    from pathlib import Path

    from carve.search.winner import export_winner
    from carve.train import TrainConfig

    finetune = None
    if args.finetune_epochs > 0:
        finetune = TrainConfig(epochs=args.finetune_epochs, lr=args.lr, train_per_class=args.train_per_class,
                               batch_size=args.batch_size, warmup_epochs=0.1, cutmix_alpha=0.0, mix_prob=0.0,
                               bn_recalibration=20, seed=args.seed)
    weights = Path(args.weights)
    if weights.suffix != ".safetensors":
        raise ValueError(f"--weights: {weights}: expected a .safetensors path (the spec goes beside it as .json)")
    winner = export_winner(args.study, _storage(args), weights.parent, args.trial, finetune, args.data,
                           name=weights.name.removesuffix(".safetensors"))
    tail = f", held-out top-1 {winner.top1:.2f} % after the finetune" if winner.top1 is not None else ""
    print(f"wrote {winner.weights_path} and {winner.spec_path}: trial {winner.trial}{tail}")
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    from carve.search.spaces import get_space, list_spaces

    for name in list_spaces():
        space = get_space(name)
        print(f"{name:10s} ~{float(space.size()):.2e} choices  {space.description}")
    return 0
