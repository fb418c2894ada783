"""Two ONNX files timed in long alternating blocks, with ONNX Runtime's spin-wait on and off.

carve's interleaved tables time sessions in blocks of 20 calls without spin-wait
(benchmarks/interleave_identical.py). This checks what that costs against the deployed regime
(spin-wait on, one session at a time): both sessions stay open and are run in turn in blocks of
``--block`` calls, the first ``--discard`` calls after each switch dropped (the other session's
spinning threads settle), ``--rounds`` times; with spin-wait on and off, ``--passes`` times each.

    PYTHONPATH=. python benchmarks/spin_long_blocks.py runs/default/compress/model_fp32.onnx \\
        runs/default/compress/model_int8.onnx

Prints a table and writes ``benchmarks/results/spin_long_blocks.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import numpy as np

from carve.latency.onnx_export import onnx_session
from carve.latency.runtime import cpu_timer

RESULTS = Path(__file__).parent / "results"


def timed_block(timed: Callable[[], float], calls: int, discard: int) -> list[float]:
    """``calls`` timings (ms) of ``timed`` in a row, the first ``discard`` dropped."""
    return [timed() for _ in range(calls)][discard:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="the reference ONNX file (e.g. the FP32 graph)")
    parser.add_argument("second", help="the ONNX file compared with it (e.g. its INT8 graph)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block", type=int, default=250)
    parser.add_argument("--discard", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    x = np.random.default_rng(args.seed).standard_normal((1, 3, args.size, args.size), dtype=np.float32)
    rows = []
    for p in range(args.passes):
        for spinning in (True, False):
            sessions = [onnx_session(path, args.threads, spinning=spinning) for path in (args.first, args.second)]
            feeds = [{s.get_inputs()[0].name: x} for s in sessions]
            calls = [cpu_timer(lambda s=s, f=f: s.run(None, f)) for s, f in zip(sessions, feeds)]
            samples: list[list[float]] = [[], []]
            for _ in range(args.rounds):
                for kept, timed in zip(samples, calls):
                    kept.extend(timed_block(timed, args.block, args.discard))
            ms = [float(np.median(s)) for s in samples]
            rows.append(dict(passed=p, spinning=spinning, first_ms=round(ms[0], 4), second_ms=round(ms[1], 4),
                             speedup=round(ms[0] / ms[1], 3)))
            print(f"pass {p} spin-wait {'on ' if spinning else 'off'}: {ms[0]:.3f} ms vs {ms[1]:.3f} ms -> "
                  f"the second {ms[0] / ms[1]:.2f}x the speed of the first", flush=True)
    print("\n| spin-wait | first (ms) | second (ms) | speed-up |\n|---|---|---|---|")
    for r in rows:
        print(f"| {'on' if r['spinning'] else 'off'} | {r['first_ms']:.3f} | {r['second_ms']:.3f} | {r['speedup']:.2f}x |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "spin_long_blocks.json"
    out.write_text(json.dumps(dict(first=args.first, second=args.second, args=vars(args), rows=rows,
                                   command=f"PYTHONPATH=. python benchmarks/spin_long_blocks.py {args.first} "
                                           f"{args.second}"), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
