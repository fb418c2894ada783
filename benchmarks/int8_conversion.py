"""Where an INT8 program loses agreement with FP32: in the quantization, or in the conversion.

For each model with shipped weights: the calibrated PT2E graph that carve lowers (ExecuTorch's or
litert-torch's quantizer, calibrated as ``carve export --int8`` calibrates) is run in PyTorch, and the
program converted from it in its runtime, on the same held-out images. Top-1 agreement with FP32
and relative error of the logits (``||a - b|| / ||b||``) for both, and between them: a program that
computes what its graph does (relative error near the rounding of one requantization) loses only
what quantization loses; a large gap is a conversion problem (as LiteRT's dropped pool scale was,
docs/latency.md). Prints a table, writes JSON and a PNG.

    python benchmarks/int8_conversion.py --runtime litert --images 100
    python benchmarks/int8_conversion.py mobilenet_v2_100 --runtime executorch --images 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from carve.compress.int8_inputs import calibration_images
from carve.files import save_figure, write_json
from carve.latency.artefact import open_artefact
from carve.latency.parity import image_batches
from carve.latency.program_formats import PROGRAMS
from carve.zoo import create_model
from carve.zoo.shipped import manifest, shipped_file

TAG = "carve:tiny-imagenet"


def held_out(data: str, size: int, images: int, calib_per_class: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Calibration images (1 x C x S x S, from the training split) and ``images`` held-out images."""
    from carve.train import eval_loader

    calib = calibration_images(eval_loader(data, size, 50, per_class=calib_per_class, workers=0, split=("train",)),
                               10 ** 6)
    held = image_batches(eval_loader(data, size, 50, per_class=0, workers=0, split=("val", "test")), images)
    return calib, torch.cat(held)[:images]


def compare(name: str, runtime: str, calib: list[torch.Tensor], images: torch.Tensor, work: Path) -> dict:
    if runtime == "litert":
        from carve.latency.litert_runtime import _quantize, export_tflite as export
    else:
        from carve.latency.executorch_runtime import _quantize, export_pte as export
    model = create_model(str(shipped_file(TAG, name))).eval()
    size = images.shape[-1]
    start = time.time()
    with torch.no_grad():
        fp32 = torch.cat([model(images[i:i + 50]) for i in range(0, len(images), 50)])
        done = _quantize(model, torch.zeros(1, 3, size, size), calib)
        graph = done[0] if isinstance(done, tuple) else done
        pt2e = torch.cat([graph(images[i:i + 1]) for i in range(len(images))])
    path = export(model, work / f"{name}_int8{PROGRAMS[runtime].suffix}", input_size=size, calib=calib)
    run = open_artefact(path, runtime, threads=torch.get_num_threads()).run
    program = torch.from_numpy(np.concatenate([run(images[i:i + 1].numpy()) for i in range(len(images))]))

    def agree(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.argmax(1) == b.argmax(1)).float().mean())

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    return dict(model=name, runtime=runtime, images=len(images), calib_images=len(calib),
                graph_agreement=agree(pt2e, fp32), graph_rel_err=rel(pt2e, fp32),
                program_agreement=agree(program, fp32), program_rel_err=rel(program, fp32),
                program_vs_graph_rel_err=rel(program, pt2e), seconds=round(time.time() - start, 1))


def table(rows: list[dict]) -> str:
    lines = [f"{'model':24s} {'runtime':10s} {'graph agree':>11s} {'graph err':>9s} {'program agree':>13s} "
             f"{'program err':>11s} {'program vs graph':>16s}"]
    for r in rows:
        lines.append(f"{r['model']:24s} {r['runtime']:10s} {100 * r['graph_agreement']:10.1f}% "
                     f"{r['graph_rel_err']:9.3f} {100 * r['program_agreement']:12.1f}% {r['program_rel_err']:11.3f} "
                     f"{r['program_vs_graph_rel_err']:16.3f}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4))
    ax.bar(xs - 0.2, [100 * r["graph_agreement"] for r in rows], 0.4, label="PT2E graph (in PyTorch)")
    ax.bar(xs + 0.2, [100 * r["program_agreement"] for r in rows], 0.4, label="converted program (runtime)")
    ax.axhline(95, color="grey", lw=0.8, ls="--")
    ax.set_xticks(xs, [r["model"] for r in rows], rotation=20, fontsize=8)
    ax.set(ylabel="top-1 agreement with FP32 (%)", ylim=(0, 100),
           title=f"INT8: quantization vs conversion ({rows[0]['runtime']}, {rows[0]['images']} images)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"models with {TAG} weights (default: all of them)")
    p.add_argument("--runtime", default="litert", choices=["litert", "executorch"])
    p.add_argument("--data", default="../shared/data/tiny-imagenet")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--images", type=int, default=100, help="held-out images compared")
    p.add_argument("--calib-per-class", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    names = args.names or [n for n in manifest()[TAG] if n != "carve_supernet"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    calib, images = held_out(args.data, args.size, args.images, args.calib_per_class)
    rows = []
    with tempfile.TemporaryDirectory(prefix="carve_int8_conversion_") as tmp:
        for name in names:
            rows.append(compare(name, args.runtime, calib, images, Path(tmp)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    path = args.out / f"int8_conversion_{args.runtime}.json"
    write_json(path, dict(command="python benchmarks/int8_conversion.py " + " ".join(sys.argv[1:] if argv is None
                                                                                       else argv),
                          data=args.data, size=args.size, rows=rows))
    plot(rows, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
