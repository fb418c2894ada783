"""Sensitivity analysis: the held-out top-1 lost when only one block (or layer) is compressed.

For every unit of the model (``blocks.<stage>.<block>``, the stem and the head layers, or every
weighted layer): the top-1 drop when only that unit is INT8 (in the INT8 flow of ``runtime``: ONNX
Runtime QDQ with every other node excluded and one shared calibration, or PT2E with only that
module annotated), and when only that unit's channel groups are pruned at a few
ratios (``carve.compress.prune`` with per-group ratios, no finetuning). The units whose INT8 drop
is largest are the ones to keep in floating point (``keep_float``, ``max_drop``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from torch import nn

from carve.files import save_figure, write_atomic, write_json
from carve.latency.qdq import QdqGraph, block_of
from .int8_inputs import QuantizeError, calibration_images as _images
from .quantization import OrtModel

GRANULARITIES = ("block", "layer")
TABLE_RUNTIMES = ("onnxruntime", "torch")  # INT8 flows a table can be measured in
FLOW_NAMES = dict(onnxruntime="ONNX Runtime QDQ", torch="PT2E (X86InductorQuantizer)", openvino="OpenVINO (NNCF)")


@dataclass
class SensitivityRow:
    """One unit: its nodes in the ONNX graph, top-1 with only it INT8, and with only it pruned."""

    unit: str
    nodes: int
    int8_top1: float
    int8_drop: float
    prune_top1: dict[str, float] = field(default_factory=dict)  # ratio -> top-1
    prune_drop: dict[str, float] = field(default_factory=dict)


@dataclass
class SensitivityTable:
    """Rows per unit plus the FP32 and all-INT8 top-1 they are measured against (percent)."""

    model: str
    granularity: str
    fp32_top1: float
    int8_top1: float
    images: int
    rows: list[SensitivityRow] = field(default_factory=list)
    prune_note: str = ""
    files: dict[str, str] = field(default_factory=dict)
    runtime: str = "onnxruntime"  # whose INT8 flow the rows are measured in

    def ranked(self) -> list[str]:
        """Units, the largest INT8 drop first (graph order among equals)."""
        order = {r.unit: i for i, r in enumerate(self.rows)}
        return [r.unit for r in sorted(self.rows, key=lambda r: (-r.int8_drop, order[r.unit]))]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["int8_drop"] = self.fp32_top1 - self.int8_top1
        d["ranked"] = self.ranked()
        return d

    def markdown(self) -> str:
        ratios = sorted({k for r in self.rows for k in r.prune_drop}, key=float)
        lines = [f"# INT8 and pruning sensitivity: {self.model}", "",
                 f"INT8 through {FLOW_NAMES[self.runtime]}. "
                 f"Held-out top-1 on {self.images} images: FP32 {self.fp32_top1:.2f}, everything INT8 "
                 f"{self.int8_top1:.2f} ({self.fp32_top1 - self.int8_top1:+.2f} points lost). Each row compresses "
                 f"only its {self.granularity}; drop = FP32 top-1 minus that model's top-1.", "",
                 "| " + " | ".join(["unit", "nodes", "INT8 drop"] + [f"prune {k} drop" for k in ratios]) + " |",
                 "|---|---|---|" + "---|" * len(ratios)]
        for r in self.rows:
            cells = [r.unit, str(r.nodes), f"{r.int8_drop:+.2f}"]
            cells += [f"{r.prune_drop[k]:+.2f}" if k in r.prune_drop else "-" for k in ratios]
            lines.append("| " + " | ".join(cells) + " |")
        if self.prune_note:
            lines += ["", f"Pruning: {self.prune_note}"]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ratios = sorted({k for r in self.rows for k in r.prune_drop}, key=float)
        panels = [(f"INT8 in {FLOW_NAMES[self.runtime]} (only this unit)", [r.int8_drop for r in self.rows])]
        panels += [(f"pruned {k} (only this unit)", [r.prune_drop.get(k, 0.0) for r in self.rows]) for k in ratios]
        names = [r.unit for r in self.rows]
        fig, axes = plt.subplots(1, len(panels), figsize=(max(6.5, 4.5 * len(panels)), 0.28 * len(names) + 1.5), squeeze=False)
        for ax, (title, values) in zip(axes[0], panels):
            ax.barh(range(len(values)), values, color=["tab:red" if v > 0 else "tab:blue" for v in values])
            ax.set_yticks(range(len(values)), names, fontsize=7)
            ax.invert_yaxis()
            ax.axvline(0, color="black", linewidth=0.5)
            ax.set_xlabel("top-1 drop (points)")
            ax.set_title(title, fontsize=9)
        fig.suptitle(f"{self.model}: sensitivity per {self.granularity} ({self.images} held-out images)", fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path)

    def write(self, out_dir: str | Path, stem: str = "sensitivity") -> dict[str, str]:
        """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into ``out_dir``; return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.files = dict(json=str(out / f"{stem}.json"), markdown=str(out / f"{stem}.md"),
                          png=str(out / f"{stem}.png"))
        write_json(self.files["json"], self.to_dict())
        write_atomic(self.files["markdown"], self.markdown())
        self.plot(self.files["png"])
        return self.files


def top1(model: nn.Module, data: Iterable) -> tuple[float, int]:
    """Top-1 (percent) and image count of ``model`` on ``(images, labels)`` batches, on the CPU."""
    from carve.train import evaluate

    res = evaluate(model, data, device="cpu")
    return float(res["top1"]), int(res["n"])


def _prune_groups(unit: str) -> str:
    """The prefix of the channel groups ``carve.zoo.channels.walk`` gives a unit (``blocks.1.0.``, ``stem``)."""
    return unit + "." if unit.count(".") >= 2 else unit


def _prune_drops(prunable: nn.Module | None, units: list[str], ratios: Sequence[float], data: Iterable,
                 fp32: float) -> tuple[dict[str, dict[str, float]], str]:
    """Top-1 per unit and ratio with only that unit's channel groups pruned; and a note on what was not."""
    if not ratios:
        return {}, "not asked for"
    spec = getattr(prunable, "spec", None)
    if prunable is None or spec is None:
        return {}, "the model has no carve spec; only INT8 sensitivity is measured"
    from carve.zoo.channels import walk

    from .pruning import PruneError, check_ratio, prune

    for r in ratios:
        check_ratio(r, "prune_ratios")
    try:
        groups = list(walk(spec).groups)
    except ValueError as exc:
        return {}, f"the spec cannot be pruned ({exc}); only INT8 sensitivity is measured"
    out: dict[str, dict[str, float]] = {}
    skipped = []
    for unit in units:
        prefix = _prune_groups(unit)
        if not any(g.startswith(prefix) for g in groups):
            skipped.append(unit)
            continue
        for r in ratios:
            try:
                pruned, _ = prune(prunable, spec, 0.0, ratios={prefix: r}, input_size=8)
            except PruneError as exc:
                skipped.append(f"{unit} ({exc})")
                break
            out.setdefault(unit, {})[f"{r:g}"] = top1(pruned, data)[0]
    note = f"units without prunable channel groups: {', '.join(skipped)}" if skipped else ""
    return out, note


def measure_sensitivity(model: nn.Module, calib: Iterable, eval: Iterable, out_dir: str | Path, *,
                granularity: str = "block", prune_ratios: Sequence[float] = (0.25, 0.5), calib_images: int = 128,
                calibration: str = "percentile", prunable: nn.Module | None = None, threads: int | None = None,
                graph: QdqGraph | None = None, runtime: str = "onnxruntime") -> SensitivityTable:
    """Measure, per unit, the held-out top-1 drop when only it is INT8 and when only it is pruned.

    ``calib``/``eval``: batches of images or ``(images, labels)``; ``eval`` gives the top-1.
    ``granularity``: "block" (``blocks.i.j``, stem, head layers) or "layer" (every conv/linear; INT8
    only). ``prunable``: the unfolded carve model to prune (default ``model`` when it has a spec and
    BatchNorms). ``graph``: a ``QdqGraph`` of ``model`` already calibrated, to share its export (it
    names the units in either runtime). ``runtime``: the INT8 flow measured, "onnxruntime" or "torch"
    (PT2E; ``calibration`` applies to ONNX Runtime only).
    """
    if granularity not in GRANULARITIES:
        raise QuantizeError(f"granularity: expected one of {list(GRANULARITIES)}, got {granularity!r}")
    if runtime not in TABLE_RUNTIMES:
        raise QuantizeError(f"runtime: a sensitivity table is measured in one of {list(TABLE_RUNTIMES)}, "
                            f"got {runtime!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = _images(calib, calib_images)
    if graph is None:
        graph = QdqGraph(model, images, out, calibration)
    fp32, n = top1(model, eval)

    def int8_top1(only: list[str] | None) -> float:
        if runtime == "torch":
            from .quantization import quantize_pt2e

            q = quantize_pt2e(model, calib=images, calib_images=len(images), only=only, compile=False)[0]
            return top1(q, eval)[0]
        path = graph.quantize(out / ("sensitivity_int8.onnx" if only is None else "sensitivity_variant.onnx"),
                              only=only)
        return top1(OrtModel(path, threads), eval)[0]

    full = int8_top1(None)
    units = graph.units(granularity)
    rows = []
    for unit in units:
        t = int8_top1([unit])
        rows.append(SensitivityRow(unit=unit, nodes=len(graph.nodes_in([unit])), int8_top1=t, int8_drop=fp32 - t))
    (out / "sensitivity_variant.onnx").unlink(missing_ok=True)
    if prunable is None and any(k.endswith("running_var") for k in model.state_dict()):
        prunable = model
    if granularity == "layer":
        pruned, note = {}, "measured per block only (granularity='block'); this table is per layer"
    else:
        pruned, note = _prune_drops(prunable, [block_of(u) for u in units], prune_ratios, eval, fp32)
    for row in rows:
        row.prune_top1 = pruned.get(row.unit, {})
        row.prune_drop = {k: fp32 - v for k, v in row.prune_top1.items()}
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    return SensitivityTable(model=name, granularity=granularity, fp32_top1=fp32, int8_top1=full, images=n, rows=rows,
                            prune_note=note, runtime=runtime)


__all__ = ["GRANULARITIES", "TABLE_RUNTIMES", "SensitivityRow", "SensitivityTable", "measure_sensitivity", "top1"]
