"""What does timing an ONNX Runtime graph through ``OrtModel`` (the compress pipeline's INT8 model)
add to the bare session call?

The pipeline's gate times the FP32 model as a bare ONNX Runtime session and the INT8 graph through
``carve.compress.quantization.OrtModel`` (a module: torch tensor in, numpy call, torch tensor out),
timed by the latency engine's eager runner. This times one file three ways in blocks of ``--block``
calls (the first ``--discard`` dropped), ``--passes`` times: the bare session, ``OrtModel(x)``, and
the eager runner ``carve.compress.step_timing.time_together`` uses for it.

    PYTHONPATH=. python benchmarks/ort_wrapper_overhead.py runs/default/compress/model_int8.onnx

Prints a table and writes ``benchmarks/results/ort_wrapper_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from carve.compress.quantization import OrtModel
from carve.latency.runtime import cpu_timer, make_runner, torch_threads
from spin_long_blocks import timed_block

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx", help="an ONNX file with a 1x3xHxW input (height and width fixed or free)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block", type=int, default=300)
    parser.add_argument("--discard", type=int, default=50)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = OrtModel(args.onnx, args.threads)
    x = torch.randn(1, 3, args.size, args.size)
    feed = {model.input_name: x.numpy()}
    rows = []
    with torch_threads(args.threads), torch.inference_mode():
        runner = make_runner(model, "eager", "cpu", 1, args.size, args.threads, in_channels=3)
        for p in range(args.passes):
            ways = [cpu_timer(lambda: model.session.run(None, feed)), cpu_timer(lambda: model(x)), runner.timed]
            bare, module, engine = [float(np.median(timed_block(t, args.block, args.discard))) for t in ways]
            rows.append(dict(passed=p, session_ms=round(bare, 4), ortmodel_ms=round(module, 4),
                             eager_runner_ms=round(engine, 4)))
            print(f"pass {p}: bare session {bare:.3f} ms, OrtModel(x) {module:.3f} ms (x{module / bare:.2f}), "
                  f"eager runner {engine:.3f} ms (x{engine / bare:.2f})", flush=True)
    print("\n| pass | bare session (ms) | OrtModel (ms) | eager runner (ms) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['passed']} | {r['session_ms']:.3f} | {r['ortmodel_ms']:.3f} | {r['eager_runner_ms']:.3f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "ort_wrapper_overhead.json"
    out.write_text(json.dumps(dict(onnx=args.onnx, args=vars(args), rows=rows,
                                   command=f"PYTHONPATH=. python benchmarks/ort_wrapper_overhead.py {args.onnx}"),
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
