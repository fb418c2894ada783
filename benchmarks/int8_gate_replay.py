"""The compress pipeline's INT8 speed gate replayed outside the pipeline, on a finished run's files.

The gate times the model before the quantize step (here ``compress/pruned.safetensors``, exported
by the latency engine at ``--size``) against the INT8 graph (``compress/model_int8.onnx`` through
``OrtModel``) with ``carve.compress.step_timing.time_together``, as the pipeline does; ``--repeats``
times. Compare with the ``gate_speedup`` of the run's INT8 row (``compress/done.json``).

    PYTHONPATH=. python benchmarks/int8_gate_replay.py --run runs/default

Prints the pair's figures and writes ``benchmarks/results/int8_gate_replay.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from carve.compress.quantization import OrtModel
from carve.compress.step_timing import TimedModel, time_together
from carve.zoo import create_model

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/default", help="a carve run folder with a finished compress step")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    run = Path(args.run)
    fp32 = create_model(str(run / "compress" / "pruned.safetensors")).eval()
    int8 = OrtModel(run / "compress" / "model_int8.onnx", args.threads)
    summary = json.loads((run / "compress" / "done.json").read_text())["summary"]
    in_run = next((r["gate_speedup"] for r in summary["rows"] if r["step"].startswith("int8")), None)
    rows = []
    for repeat in range(args.repeats):
        t = time_together([TimedModel(fp32, "onnxruntime"), TimedModel(int8, "eager")], args.size, 3, args.threads)
        rows.append(dict(repeat=repeat, fp32_ms=round(t[0].median_ms, 4), int8_ms=round(t[1].median_ms, 4),
                         speedup=round(t[0].median_ms / t[1].median_ms, 3), runs=t[0].runs))
        print(f"repeat {repeat}: FP32 {t[0].median_ms:.3f} ms, INT8 {t[1].median_ms:.3f} ms -> "
              f"{t[0].median_ms / t[1].median_ms:.2f}x ({t[0].runs} calls each)", flush=True)
    print(f"the run's own gate: {in_run}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "int8_gate_replay.json"
    out.write_text(json.dumps(dict(run=args.run, args=vars(args), gate_in_run=in_run, rows=rows,
                                   command=f"PYTHONPATH=. python benchmarks/int8_gate_replay.py --run {args.run}"),
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
