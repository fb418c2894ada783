"""``carve latency measure|predict|build-table``."""

from __future__ import annotations

import argparse
import json


def add_timing_args(p: argparse.ArgumentParser) -> None:
    """The measurement conditions shared by every latency-timing command."""
    from carve.latency.runtime import CLOCKS, RUNTIMES

    p.add_argument("--device", default="cpu", help="cpu, cuda[:N] or a carve agent's http://HOST:PORT (token in "
                   "$CARVE_AGENT_TOKEN; runtime onnxruntime or openvino)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224, help="input size in px (default 224)")
    p.add_argument("--runtime", choices=RUNTIMES, default="eager")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores available)")
    p.add_argument("--clock", choices=CLOCKS, default="wall",
                   help="cpu: thread CPU time, blind to other processes (with --threads 1 on shared machines)")


def register(sub: argparse._SubParsersAction) -> None:
    lat = sub.add_parser("latency", help="measure, tabulate and predict latency on this device")
    lsub = lat.add_subparsers(dest="latency_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        add_timing_args(p)
        p.add_argument("--db", default=None, help="SQLite cache (default: $CARVE_CACHE_DIR or ~/.cache/carve)")
        p.add_argument("--json", action="store_true", help="print JSON")

    p = lsub.add_parser("measure", help="measure one model (zoo name, spec file or carve weights file)")
    p.add_argument("model", help="zoo name, .json/.yaml spec or .safetensors weights")
    p.add_argument("--remeasure", action="store_true", help="ignore a cached figure")
    common(p)
    p.set_defaults(func=cmd_measure)

    p = lsub.add_parser("build-table", help="measure the blocks a search space (or given specs) can produce")
    p.add_argument("--space", default=None, help="search space name (carve.search.spaces)")
    p.add_argument("--specs", nargs="*", default=[], help="spec files or zoo names instead of (or with) a space")
    p.add_argument("--samples", type=int, default=200, help="architectures drawn from the space")
    p.add_argument("--fit", type=int, default=8, help="architectures measured whole to fit the correction")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="input sizes (default: the space's resolutions, else --size)")
    p.add_argument("--out", default=None, help="table JSON (default: per device in the cache folder)")
    common(p)
    p.set_defaults(func=cmd_build_table)

    p = lsub.add_parser("predict", help="predicted latency of a spec from a latency table")
    p.add_argument("spec", help="spec file (.json/.yaml) or zoo name")
    p.add_argument("--table", default=None, help="table JSON (default: this device's table in the cache folder)")
    p.add_argument("--measure", action="store_true", help="also measure it, to compare")
    p.add_argument("--extend", action="store_true", help="measure parts the table lacks, then save it")
    common(p)
    p.set_defaults(func=cmd_predict)


def _protocol(args: argparse.Namespace):  # noqa: ANN202
    from carve.latency import Protocol

    return Protocol(clock=args.clock)


def _cache(args: argparse.Namespace):  # noqa: ANN202
    return args.db if args.db else True


def cmd_measure(args: argparse.Namespace) -> int:
    from carve.latency import measure

    r = measure(args.model, device=args.device, batch=args.batch, input_size=args.size, threads=args.threads,
                runtime=args.runtime, cache=_cache(args), remeasure=args.remeasure, protocol=_protocol(args))
    print(json.dumps(r.to_dict(), indent=2) if args.json else f"{args.model}: {r}")
    return 0


def _specs(items: list[str]) -> list:
    from carve.zoo import resolve_spec

    return [resolve_spec(item)[0] for item in items]


def cmd_build_table(args: argparse.Namespace) -> int:
    from carve.latency import physical_cores
    from carve.latency.table import build_table, sample_specs

    specs, sizes = _specs(args.specs), args.sizes
    if args.space:
        from carve.search.spaces import get_space

        space = get_space(args.space)
        specs += sample_specs(space, args.samples)
        sizes = sizes or list(getattr(space, "resolution", ()))
    if not specs:
        raise ValueError("give --space NAME or --specs FILE|NAME ...")
    threads = args.threads or physical_cores()
    table = build_table(specs, input_sizes=sizes or [args.size], runtime=args.runtime, device=args.device,
                        batch=args.batch, threads=threads, fit_models=args.fit, cache=_cache(args),
                        protocol=_protocol(args), save=args.out or True)
    from carve.latency.table import default_table_path

    path = args.out or default_table_path(table.fingerprint, table.runtime, table.batch)
    summary = dict(table=str(path), parts=len(table.entries), specs=len(specs),
                   corrections={k: vars(v) for k, v in table.corrections.items()})
    print(json.dumps(summary, indent=2) if args.json else
          f"{len(table.entries)} parts from {len(specs)} specs -> {path}\n" +
          "\n".join(f"  correction at {k} px: measured = {c.a:.3f} * sum + {c.b:.4f} * parts + {c.d:.3f} * Mparams"
                    f" + {c.c:.3f} (fitted on {c.fitted_on})" for k, c in table.corrections.items()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from carve.latency import device_fingerprint, measure, physical_cores
    from carve.latency.table import LatencyTable, default_table_path, predict

    threads = args.threads or physical_cores()
    path = args.table or default_table_path(device_fingerprint(args.device, threads, args.runtime), args.runtime, args.batch)
    table = LatencyTable.load(path)
    spec = _specs([args.spec])[0]
    if args.extend and table.missing(spec, args.size):
        from carve.latency.table import build_table

        table = build_table([spec], input_sizes=args.size, runtime=args.runtime, device=args.device,
                            batch=args.batch, threads=threads, fit_models=0, cache=_cache(args),
                            protocol=_protocol(args), table=table, save=path)
    out = dict(spec=spec.name, input_size=args.size, predicted_ms=predict(spec, table, args.size), table=str(path))
    if args.measure:
        out["measured_ms"] = measure(spec, device=args.device, batch=args.batch, input_size=args.size,
                                     threads=threads, runtime=args.runtime, cache=_cache(args),
                                     protocol=_protocol(args)).median_ms
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        line = f"{spec.name} at {args.size} px: predicted {out['predicted_ms']:.3f} ms"
        if "measured_ms" in out:
            line += f", measured {out['measured_ms']:.3f} ms ({out['predicted_ms'] / out['measured_ms'] - 1:+.1%})"
        print(line)
    return 0
