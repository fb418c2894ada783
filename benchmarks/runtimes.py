"""Zoo models in every runtime that runs here: eager PyTorch, ONNX Runtime, OpenVINO, ExecuTorch, LiteRT;
FP32 and INT8.

Each model is shipped with ``carve export`` (``carve.compress.shipping.export_model``): ONNX FP32,
ONNX INT8 (ORT static QDQ), OpenVINO IR FP32 and INT8 (NNCF), ExecuTorch XNNPACK FP32 and INT8
(PT2E XNNPACK quantizer), LiteRT XNNPACK FP32 and INT8 (litert-torch's PT2E quantizer), each with its
parity against PyTorch on real images (top-1 agreement, max |diff|). With ``--pretrained TAG`` the
models that ship weights under that tag are exported with them (the others are skipped), so parity
is measured on a trained network's decisions rather than a random one's, and at the input size the
weights were trained at (``--parity-size``; a second export of each variant at that size): at the
timed size a 64 px model sees objects it was never trained on and is at chance, where agreement
measures noise. Then all of a model's variants are timed interleaved
in this one process (``carve.latency.comparison.interleave``: round-robin blocks after warm-up) at
batch 1, so each ratio to ONNX Runtime FP32 and each INT8 speed-up survives a shared machine's
drift. Rankings of models that change between runtimes are listed. Prints a table, writes JSON and
a PNG.

    python benchmarks/runtimes.py                                    # the whole zoo, 224 px, 2 threads
    python benchmarks/runtimes.py mobilenet_v3_small_075 shufflenet_v2_050 --max-time 1 --parity-images 50
    python benchmarks/runtimes.py --pretrained carve:tiny-imagenet --data ../shared/data/tiny-imagenet \
        --calib-per-class 1 --parity-images 1000        # the shipped weights, 1,000 held-out images
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from carve.compress.shipping import SUFFIX, ExportConfig, export_model
from carve.files import write_json
from carve.latency import Protocol, device_fingerprint
from carve.latency.artefact import open_artefact
from carve.latency.comparison import interleave
from carve.latency.protocol import summarize, warm_up
from carve.latency.runtime import cpu_timer, make_runner, torch_threads
from carve.zoo import create_model, list_models
from carve.zoo.shipped import manifest, record, shipped_file

VARIANTS = [("onnxruntime", "onnx", False), ("onnxruntime-int8", "onnx", True), ("openvino", "openvino", False),
            ("openvino-int8", "openvino", True), ("executorch", "executorch", False),
            ("executorch-int8", "executorch", True), ("litert", "litert", False),
            ("litert-int8", "litert", True)]  # name, export target, INT8
INT8_RUNTIMES = ("onnxruntime", "openvino", "executorch", "litert")


def bench_model(name: str, args: argparse.Namespace, work: Path, proto: Protocol, source: str,
                parity_size: int) -> dict:
    """Export one model (zoo name or weights file ``source``) every way, check parity (on an export at
    ``parity_size`` when that is not the timed size), time every variant (and eager) interleaved."""
    reports = {}
    for variant, to, int8 in VARIANTS:
        suffix = SUFFIX[to]

        def export(size: int, parity: bool) -> dict:
            cfg = ExportConfig(model=source, to=to, int8=int8, calib=args.data if int8 else None,
                               calib_per_class=args.calib_per_class, size=size, data=args.data if parity else None,
                               parity_images=args.parity_images, num_classes=args.num_classes,
                               threads=args.threads, latency=False, out=str(work / f"{name}_{variant}_{size}{suffix}"))
            return export_model(cfg)

        reports[variant] = export(args.size, parity_size == args.size)
        if parity_size != args.size:
            reports[variant]["parity"] = dict(export(parity_size, True)["parity"], input_size=parity_size)
    model = (create_model(source) if source != name else create_model(name, num_classes=args.num_classes)).eval()
    with torch_threads(args.threads), torch.inference_mode():
        calls = {"eager": make_runner(model, "eager", threads=args.threads, input_size=args.size).timed}
        for variant, _, _ in VARIANTS:
            art = open_artefact(reports[variant]["artefact"], reports[variant]["runtime"], args.threads)
            x = art.example(1, args.size)
            calls[variant] = cpu_timer(lambda art=art, x=x: art.run(x))
        for call in calls.values():
            warm_up(call, proto)
        samples = interleave(list(calls.values()), proto, block=args.block)
    stats = {k: summarize(s) for k, s in zip(calls, samples)}
    base = stats["onnxruntime"].median_ms
    row = dict(model=name, median_ms={k: round(s.median_ms, 4) for k, s in stats.items()},
               runs={k: s.runs for k, s in stats.items()},
               ratio_to_ort={k: round(s.median_ms / base, 4) for k, s in stats.items()},
               int8_speedup={rt: round(stats[rt].median_ms / stats[f"{rt}-int8"].median_ms, 4)
                             for rt in INT8_RUNTIMES},
               parity_size=parity_size, parity={v: reports[v]["parity"] for v, _, _ in VARIANTS},
               size_bytes={v: reports[v]["size_bytes"] for v, _, _ in VARIANTS})
    return row


def rank_changes(rows: list[dict]) -> dict[str, list[str]]:
    """Model order (fastest first) per runtime variant, listed where it differs from ONNX Runtime FP32's."""
    orders = {k: [r["model"] for r in sorted(rows, key=lambda r: r["median_ms"][k])] for k in rows[0]["median_ms"]}
    return {k: v for k, v in orders.items() if v != orders["onnxruntime"]}


def table(rows: list[dict]) -> str:
    keys = list(rows[0]["median_ms"])
    lines = [f"{'model':26s} " + " ".join(f"{k:>17s}" for k in keys) +
             "  int8 ORT  int8 OV  int8 ET  int8 LRT  agree(ORT8/OV8/ET8/LRT8)"]
    for r in rows:
        cells = " ".join(f"{r['median_ms'][k]:8.2f} ({r['ratio_to_ort'][k]:5.2f})" for k in keys)
        agree = "/".join(f"{r['parity'][v]['top1_agreement']:.2f}"
                         for v in (f"{rt}-int8" for rt in INT8_RUNTIMES))
        speedups = " ".join(f"{r['int8_speedup'][rt]:7.2f}x" for rt in INT8_RUNTIMES)
        lines.append(f"{r['model']:26s} {cells}  {speedups}  {agree} at {r['parity_size']} px")
    return "ms (ratio to ONNX Runtime FP32)\n" + "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(rows[0]["median_ms"])
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) * len(keys) / 3), 4.5))
    for i, k in enumerate(keys):
        ax.bar([j + i * width for j in range(len(rows))], [r["ratio_to_ort"][k] for r in rows], width, label=k)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], [r["model"] for r in rows], rotation=30,
                  fontsize=8)
    ax.set(ylabel="latency / ONNX Runtime FP32", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", default=["*"], help="zoo names or globs (default: the whole zoo)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-time", type=float, default=4.0, help="timed seconds per variant")
    p.add_argument("--block", type=int, default=20, help="calls per variant per round")
    p.add_argument("--data", default="../shared/data/cifar10", help="image folder: calibration and parity images")
    p.add_argument("--calib-per-class", type=int, default=10)
    p.add_argument("--parity-images", type=int, default=1000)
    p.add_argument("--parity-size", type=int, default=None,
                   help="input size in px of the parity check (default: the size the shipped weights were "
                        "trained at with --pretrained, else --size): agreement means something only where "
                        "the model is accurate")
    p.add_argument("--num-classes", type=int, default=None, help="classifier width (default: the zoo's)")
    p.add_argument("--pretrained", default=None, help="weights tag (e.g. carve:tiny-imagenet): export the "
                                                      "shipped weights, skip models without them")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    names = list(dict.fromkeys(n for pat in args.names for n in list_models(pat)))
    sources = {n: n for n in names}
    if args.pretrained:
        sources = {n: str(shipped_file(args.pretrained, n)) for n in names if n in manifest().get(args.pretrained, {})}
        print(f"{len(sources)} of {len(names)} models ship {args.pretrained} weights: {', '.join(sources)}", flush=True)
        names = list(sources)
    proto = Protocol(min_runs=40, rel_ci=0.02, max_time_s=args.max_time)
    start, rows = time.time(), []
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="carve_runtimes_") as tmp:
        for name in names:
            parity_size = args.parity_size or (record(args.pretrained, name)["eval"]["input_size"]
                                               if args.pretrained else args.size)
            rows.append(bench_model(name, args, Path(tmp), proto, sources[name], parity_size))
            print(f"{name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in rows[-1]["median_ms"].items()), flush=True)
            partial = args.out / f"runtimes_{args.size}px_{args.threads}t.partial.json"  # a kill keeps finished models
            write_json(partial, dict(rows=rows))
    print(table(rows))
    changes = rank_changes(rows)
    print("rankings that differ from ONNX Runtime FP32's: " +
          ("; ".join(f"{k}: {' < '.join(v)}" for k, v in changes.items()) or "none"))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"runtimes_{args.size}px_{args.threads}t.json"
    plot(rows, path.with_suffix(".png"), f"batch 1, {args.size} px, {args.threads} threads, interleaved")
    fingerprint = {k: v for rt in ("openvino", "executorch", "litert")
                   for k, v in device_fingerprint("cpu", args.threads, rt).items()}
    data = dict(fingerprint=fingerprint, size=args.size, pretrained=args.pretrained,
                threads=args.threads, protocol=proto.as_dict(), block=args.block, data=args.data,
                parity_images=args.parity_images, calib_per_class=args.calib_per_class,
                command="python benchmarks/runtimes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                wall_s=round(time.time() - start, 1), rank_changes=changes, rows=rows)
    tmp_path = path.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(data, indent=1))
    os.replace(tmp_path, path)
    path.with_suffix(".partial.json").unlink(missing_ok=True)
    print(f"wrote {path} and {path.with_suffix('.png')} in {data['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
