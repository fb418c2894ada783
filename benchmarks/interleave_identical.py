"""How far apart does one interleaved table put the same graph? The compress pipeline's final table,
rebuilt from a run folder and timed several times.

The compress step times every row together (``carve.compress.step_timing.time_together``); its
``export`` row is the model of the last kept step, so in a run whose only kept step is pruning the
pruned row and the export row are the same graph. This script times, in ONNX Runtime at 224 px,
``original, pruned, pruned (folded), pruned (again)`` as the final table does, ``--repeats`` times,
with ONNX Runtime's intra-op spin-wait on (its default: each session's idle threads spin for a
while after a call, on the cores the next session needs) and off (what carve's interleaved timing
uses since this measurement), and original and pruned each alone in the process, as deployed.
Each table's figures are given as the ratio of medians and paired round by round (``Timing.ratio``,
what ``compare`` and the compress gates read since then).

    PYTHONPATH=. python benchmarks/interleave_identical.py --run runs/default --repeats 3

``--runtime openvino`` times the same rows in OpenVINO as carve makes its sessions.

Prints a table and writes ``benchmarks/results/interleave_identical[_openvino].json`` and a PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from carve.compress import fold
from carve.compress.step_timing import TimedModel, time_together
from carve.latency import onnx_export
from carve.zoo import create_model

RESULTS = Path(__file__).parent / "results"
ROWS = ("original", "pruned", "pruned, folded", "pruned (again)")


def sessions(spinning: bool):
    """``onnx_session`` with spin-wait forced on or off, whatever its caller asks for."""
    real = onnx_export.onnx_session

    def make(path, threads=None, asked=True):
        return real(path, threads, spinning)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/default", help="a carve run folder with train/ and compress/")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "openvino"),
                        help="openvino: its sessions as carve makes them (no spin-wait switch)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    run = Path(args.run)
    original = create_model(str(run / "train" / "found" / "final.safetensors")).eval()
    pruned = create_model(str(run / "compress" / "pruned.safetensors")).eval()
    folded, _ = fold(pruned, pruned.spec)
    models = [original, pruned, folded, pruned]
    variants = ({"spinning (ORT default)": True, "no spinning": False} if args.runtime == "onnxruntime"
                else {"openvino": False})
    results, alone = [], []
    real_session = onnx_export.onnx_session
    for variant, spinning in variants.items():
        onnx_export.onnx_session = sessions(spinning)
        try:
            for repeat in range(args.repeats):
                timings = time_together([TimedModel(m, args.runtime) for m in models], 224, 3, args.threads)
                row = dict(variant=variant, repeat=repeat, medians_ms=[round(t.median_ms, 4) for t in timings],
                           p10_ms=[round(t.p10_ms, 4) for t in timings], p90_ms=[round(t.p90_ms, 4) for t in timings])
                row["same_graph_ratio"] = round(row["medians_ms"][3] / row["medians_ms"][1], 3)
                row["speedup_pruned_row"] = round(row["medians_ms"][0] / row["medians_ms"][1], 3)
                row["speedup_again_row"] = round(row["medians_ms"][0] / row["medians_ms"][3], 3)
                # the same three figures paired round by round, as compare and the compress gates read them
                row["paired_same_graph_ratio"] = round(timings[3].ratio / timings[1].ratio, 3)
                row["paired_speedup_pruned_row"] = round(timings[1].speedup_over(timings[0]), 3)
                row["paired_speedup_again_row"] = round(timings[3].speedup_over(timings[0]), 3)
                results.append(row)
                print(f"{variant:24s} #{repeat}: " + "  ".join(f"{n} {ms:.3f}" for n, ms in zip(ROWS, row["medians_ms"]))
                      + f"  | again/pruned {row['same_graph_ratio']:.3f} (paired {row['paired_same_graph_ratio']:.3f})"
                        f"  speed-up {row['speedup_pruned_row']:.2f}x / {row['speedup_again_row']:.2f}x (paired "
                        f"{row['paired_speedup_pruned_row']:.2f}x / {row['paired_speedup_again_row']:.2f}x)", flush=True)
                # each model alone in the process: the speed-up as deployed, one session at a time
                solo = [time_together([TimedModel(m, args.runtime)], 224, 3, args.threads)[0].median_ms
                        for m in (original, pruned)]
                alone.append(dict(variant=variant, repeat=repeat, original_ms=round(solo[0], 4),
                                  pruned_ms=round(solo[1], 4), speedup=round(solo[0] / solo[1], 3)))
                print(f"{variant:24s} #{repeat} alone: original {solo[0]:.3f}  pruned {solo[1]:.3f}  "
                      f"speed-up {solo[0] / solo[1]:.2f}x", flush=True)
        finally:
            onnx_export.onnx_session = real_session
    print("\n| variant | figure | same graph, later row / earlier row (each repeat) | speed-up from the pruned row | "
          "from the later row | each alone: speed-up |\n|---|---|---|---|---|---|")
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        solo = ", ".join(f"{r['speedup']:.2f}x" for r in alone if r["variant"] == variant)
        for figure, prefix in (("medians", ""), ("paired", "paired_")):
            same = ", ".join(str(r[f"{prefix}same_graph_ratio"]) for r in rows)
            first = ", ".join(f"{r[f'{prefix}speedup_pruned_row']:.2f}x" for r in rows)
            later = ", ".join(f"{r[f'{prefix}speedup_again_row']:.2f}x" for r in rows)
            print(f"| {variant} | {figure} | {same} | {first} | {later} | {solo if figure == 'medians' else ''} |")
    RESULTS.mkdir(exist_ok=True)
    stem = "interleave_identical" + ("" if args.runtime == "onnxruntime" else f"_{args.runtime}")
    out = RESULTS / f"{stem}.json"
    command = (f"PYTHONPATH=. python benchmarks/interleave_identical.py --run {args.run} --repeats {args.repeats}"
               + ("" if args.runtime == "onnxruntime" else f" --runtime {args.runtime}"))
    out.write_text(json.dumps(dict(run=str(run), runtime=args.runtime, threads=args.threads, rows=list(ROWS),
                                   results=results, alone=alone, command=command), indent=1))
    plot(results, list(variants), RESULTS / f"{stem}.png")
    print(f"wrote {out}")


def plot(results: list[dict], variants: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(variants), figsize=(5.5 * len(variants), 3.6), squeeze=False, sharey=True)
    for ax, variant in zip(axes[0], variants):
        rows = [r for r in results if r["variant"] == variant]
        for r in rows:
            ax.plot(range(len(ROWS)), r["medians_ms"], marker="o", label=f"repeat {r['repeat']}")
        ax.set_xticks(range(len(ROWS)), ROWS, rotation=20, fontsize=8)
        ax.set_title(variant, fontsize=10)
        ax.set_ylabel("median latency (ms), ONNX Runtime, 224 px")
        ax.legend(fontsize=8)
    fig.suptitle("One interleaved table (carve.compress.step_timing), the same pruned graph in two rows")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
