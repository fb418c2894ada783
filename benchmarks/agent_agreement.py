"""The same ONNX file timed through a ``carve agent`` (loopback) and locally: do the figures agree?

Starts a real agent process on a free loopback port, exports each model to ONNX once, then takes
``--rounds`` figures each way, alternating (agent, local, agent, local, ...), every figure a full
``measure_artefact`` under the chosen protocol. The issue's floor: medians of three runs each
within 10%. Prints a table, writes JSON and a PNG.

    python benchmarks/agent_agreement.py mobilenet_v3_small_075 --size 224 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from carve.latency import PROTOCOLS
from carve.latency.artefact_latency import measure_artefact
from carve.latency.onnx_export import export_onnx
from carve.latency.remote import measure_remote
from carve.zoo import create_model

ROOT = Path(__file__).resolve().parents[1]


def start_agent(token: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "carve.cli", "agent", "--port", "0", "--token", token],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    line = proc.stdout.readline()
    if not line.startswith("carve agent listening on "):
        proc.terminate()
        raise RuntimeError(f"the agent did not start: {line!r}")
    return proc, line.split()[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", help="zoo names")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="full")
    p.add_argument("--runtime", choices=["onnxruntime", "openvino"], default="onnxruntime")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    token = secrets.token_hex(16)
    proc, url = start_agent(token)
    rows, start = [], time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="carve_agent_bench_") as tmp:
            for name in args.names:
                path = export_onnx(create_model(name).eval(), Path(tmp) / f"{name}.onnx", input_size=args.size)
                agent_ms, local_ms = [], []
                for _ in range(args.rounds):
                    agent_ms.append(measure_remote(url, path, args.runtime, args.threads, 1, args.size, args.protocol,
                                                   token=token).median_ms)
                    local_ms.append(measure_artefact(path, args.runtime, args.threads, 1, args.size,
                                                     PROTOCOLS[args.protocol]).median_ms)
                a, b = statistics.median(agent_ms), statistics.median(local_ms)
                rows.append(dict(model=name, agent_ms=agent_ms, local_ms=local_ms, agent_median_ms=a,
                                 local_median_ms=b, rel_diff=a / b - 1, within_10pct=abs(a / b - 1) <= 0.10))
                print(f"{name}: agent {a:.3f} ms, local {b:.3f} ms ({a / b - 1:+.1%})", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"agent_agreement_{args.runtime}_{args.size}px_{args.threads}t.json"
    data = dict(command="python benchmarks/agent_agreement.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                runtime=args.runtime, size=args.size, threads=args.threads, rounds=args.rounds,
                protocol=args.protocol, wall_s=round(time.time() - start, 1), rows=rows)
    path.write_text(json.dumps(data, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 * len(rows)), 3.5))
    ax.bar(range(len(rows)), [100 * r["rel_diff"] for r in rows])
    for lim in (-10, 10):
        ax.axhline(lim, color="tab:red", ls="--", lw=0.8)
    ax.set_xticks(range(len(rows)), [r["model"] for r in rows], rotation=20, fontsize=8)
    ax.set(ylabel="agent / local - 1 (%)", title=f"median of {args.rounds} runs each, {args.runtime}")
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=110)
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
