"""The compress pipeline's INT8 speed gate replayed outside the pipeline, on a finished run's files.

The gate times the model before the quantize step (here ``compress/pruned.safetensors``, exported
by the latency engine at ``--size``) against the INT8 graph (``compress/model_int8.onnx`` through
``OrtModel``) with ``carve.compress.step_timing.time_together``, as the pipeline does; ``--repeats``
times. Compare with the ``gate_speedup`` of the run's INT8 row (``compress/done.json``).
``--load-s S`` trains a carve_100 for S seconds on both cores before every other repeat, as the
pipeline's KD finetune does just before its gate. Each repeat prints the paired speed-up the gate
decides on (``Timing.speedup_over``) beside the ratio of the two medians, and how long it took.

    PYTHONPATH=. python benchmarks/int8_gate_replay.py --run runs/default --repeats 12 --load-s 25

Prints the pair's figures and writes ``benchmarks/results/int8_gate_replay.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
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
    parser.add_argument("--load-s", type=float, default=0.0,
                        help="seconds of training on both cores before every other repeat (0: none)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    run = Path(args.run)
    fp32 = create_model(str(run / "compress" / "pruned.safetensors")).eval()
    int8 = OrtModel(run / "compress" / "model_int8.onnx", args.threads)
    summary = json.loads((run / "compress" / "done.json").read_text())["summary"]
    in_run = next((r["gate_speedup"] for r in summary["rows"] if r["step"].startswith("int8")), None)
    rows = []
    for repeat in range(args.repeats):
        loaded = bool(args.load_s) and repeat % 2 == 1
        if loaded:
            train_for(args.load_s, args.threads)
        t0 = time.perf_counter()
        t = time_together([TimedModel(fp32, "onnxruntime"), TimedModel(int8, "eager")], args.size, 3, args.threads)
        took = time.perf_counter() - t0
        rows.append(dict(repeat=repeat, after_load=loaded, fp32_ms=round(t[0].median_ms, 4),
                         int8_ms=round(t[1].median_ms, 4), speedup=round(t[1].speedup_over(t[0]), 3),
                         median_ratio=round(t[0].median_ms / t[1].median_ms, 3), runs=t[0].runs, seconds=round(took, 1)))
        print(f"repeat {repeat}{' after load' if loaded else ''}: FP32 {t[0].median_ms:.3f} ms, INT8 "
              f"{t[1].median_ms:.3f} ms -> paired {rows[-1]['speedup']:.3f}x, medians {rows[-1]['median_ratio']:.3f}x "
              f"({t[0].runs} calls each, {took:.1f} s)", flush=True)
    for key in ("speedup", "median_ratio"):
        values = [r[key] for r in rows]
        print(f"{key}: median {statistics.median(values):.3f}, range {min(values):.3f}-{max(values):.3f}")
    print(f"the run's own gate: {in_run}x")
    command = f"PYTHONPATH=. python benchmarks/int8_gate_replay.py --run {args.run} --repeats {args.repeats}" + (
        f" --load-s {args.load_s:g}" if args.load_s else "")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "int8_gate_replay.json"
    out.write_text(json.dumps(dict(run=args.run, args=vars(args), gate_in_run=in_run, rows=rows,
                                   command=command),
                              indent=1))
    print(f"wrote {out}")


def train_for(seconds: float, threads: int) -> None:
    """SGD steps of a carve_100 on random 64 px batches for ``seconds``, in this process."""
    from carve.latency.runtime import torch_threads

    model = create_model("carve_100", num_classes=202).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    with torch_threads(threads):
        while time.perf_counter() - start < seconds:
            x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 202, (32,))
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()


if __name__ == "__main__":
    main()
