"""``carve search run|show|plot|export|spaces``."""

from __future__ import annotations

import argparse
import json
import re

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
    search = sub.add_parser("search", help="hardware-aware architecture search (Optuna / Ray)")
    ssub = search.add_subparsers(dest="search_command", required=True, metavar="ACTION")

    p = ssub.add_parser("run", help="run or resume a search")
    p.add_argument("--space", default="mbconv", help="built-in space (mbconv, carve, shuffle) or a .yaml/.json file")
    p.add_argument("--study-name", default=None, help="default: SPACE-OBJECTIVE")
    _storage_args(p)
    p.add_argument("--trials", type=int, default=20, help="complete trials the study should hold")
    p.add_argument("--timeout", type=float, default=None, help="wall budget in seconds for this run")
    p.add_argument("--objective", default="proxy",
                   help="accuracy estimator: proxy (training), synflow, naswot, jacob_cov, grad_norm, snip, params, macs")
    p.add_argument("--data", default="../shared/data/cifar10", help="ImageFolder with train/ and test/")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="cap proxy-training steps (0: no cap)")
    p.add_argument("--warm-start", nargs="+", default=(), metavar="MODEL",
                   help="zoo names or spec files: the space's nearest points to them are the first trials")
    p.add_argument("--bn-recalibration", type=int, default=20, metavar="BATCHES",
                   help="re-estimate BatchNorm statistics on this many training batches before a trial is "
                        "evaluated (0: off)")
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--img-size", type=int, default=32, help="proxy-training image size")
    p.add_argument("--small-input", type=int, default=2, help="strides removed for proxy training on small images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.4, help="for 256 images per step (scaled to --batch-size)")
    p.add_argument("--latency-budget", type=parse_ms, default=None, help="e.g. 12ms")
    p.add_argument("--macs-budget", type=parse_count, default=None, help="e.g. 300M")
    p.add_argument("--params-budget", type=parse_count, default=None, help="e.g. 5M")
    p.add_argument("--latency", choices=["measure", "predict", "none"], default="measure")
    p.add_argument("--latency-table", default=None, help="latency table for --latency predict")
    p.add_argument("--runtime", choices=["onnxruntime", "eager", "compile"], default="onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick-latency", action="store_true", help="the latency engine's short timing protocol")
    p.add_argument("--latency-cache", default=None, help="latency cache file (default: carve's cache; off: none)")
    p.add_argument("--resolution", type=int, default=None, help="fix the input resolution (else searched)")
    p.add_argument("--sampler", choices=["nsga2", "tpe", "gp", "random"], default="nsga2")
    p.add_argument("--population", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an existing study of the same name")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine sharing the study")
    p.add_argument("--backend", choices=["optuna", "ray"], default="optuna")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--no-remeasure", action="store_true", help="skip re-measuring the Pareto set")
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

    p = ssub.add_parser("export", help="write a trial's spec as arch.json (create_model builds it)")
    p.add_argument("study")
    _storage_args(p)
    p.add_argument("--trial", type=int, default=None, help="trial number (default: most accurate Pareto trial)")
    p.add_argument("-o", "--output", default="arch.json")
    p.add_argument("--num-classes", type=int, default=None)
    p.set_defaults(func=cmd_export)

    p = ssub.add_parser("spaces", help="list built-in search spaces")
    p.set_defaults(func=cmd_spaces)


def _storage(args: argparse.Namespace) -> str:
    from carve.search import SearchConfig

    return SearchConfig(out_dir=args.out, storage=args.storage).storage_url


def cmd_run(args: argparse.Namespace) -> int:
    from carve.search import ObjectiveConfig, SearchConfig, run_search
    from carve.search.pareto import format_table

    obj = ObjectiveConfig(accuracy=args.objective, data=args.data, epochs=args.epochs, max_steps=args.max_steps,
                          train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                          img_size=args.img_size, small_input=args.small_input, batch_size=args.batch_size,
                          lr=args.lr, latency=args.latency, latency_table=args.latency_table, runtime=args.runtime,
                          device=args.device, threads=args.threads, seed=args.seed,
                          quick_latency=args.quick_latency, latency_cache=args.latency_cache,
                          bn_recalibration=args.bn_recalibration)
    cfg = SearchConfig(space=args.space, objective=obj, study_name=args.study_name, storage=args.storage,
                       out_dir=args.out, trials=args.trials, timeout_s=args.timeout, sampler=args.sampler,
                       population=args.population, seed=args.seed, latency_budget_ms=args.latency_budget,
                       macs_budget=args.macs_budget, params_budget=args.params_budget, resolution=args.resolution,
                       resume=args.resume, workers=args.workers, remeasure=not args.no_remeasure,
                       backend=args.backend, ray_address=args.address, cpus_per_trial=args.cpus_per_trial,
                       warm_start=tuple(args.warm_start))
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
    from carve.search.plot import DEFAULT_REFERENCES, plot_study, zoo_references

    study = load_study(args.study, _storage(args))
    names = list(DEFAULT_REFERENCES) if args.zoo is None else [n for n in args.zoo if n != "none"]
    refs = zoo_references(study, names, args.out) if names else {}
    path = plot_study(study, args.output, refs)
    print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from carve.search import export_spec

    spec = export_spec(args.study, _storage(args), args.trial, args.output, args.num_classes)
    print(f"wrote {args.output}: {spec.name} ({len(spec.blocks)} blocks, hash {spec.hash()})")
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    from carve.search.spaces import get_space, list_spaces

    for name in list_spaces():
        space = get_space(name)
        print(f"{name:10s} ~{float(space.size()):.2e} choices  {space.description}")
    return 0
