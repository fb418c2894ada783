"""The compression report: one row per step, written as Markdown, JSON and a PNG bar chart."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from carve.files import save_figure


@dataclass
class StepRow:
    """The model after one step, measured in the pipeline's process; ``speedup``: the first row's time
    over this row's, paired round by round in the final table (None when not timed)."""

    name: str
    spec_name: str
    params: int
    macs: int
    size_bytes: int
    latency_ms: float | None
    latency_p10_ms: float | None
    latency_p90_ms: float | None
    runtime: str
    top1: float | None
    notes: dict[str, Any] = field(default_factory=dict)
    speedup: float | None = None

    def speedup_over(self, first: "StepRow") -> float | None:
        """How many times faster than ``first`` (an earlier row of the same table) this row ran."""
        return speed_between(self.speedup, self.latency_ms, first.speedup, first.latency_ms)


def speed_between(speedup: float | None, latency_ms: float | None, first_speedup: float | None,
                  first_latency_ms: float | None) -> float | None:
    """How many times faster a row ran than an earlier ``first`` row of the same table: from their paired
    ``speedup``s where both were recorded, else from their medians (reports written before them);
    None when either was not timed."""
    if speedup and first_speedup:
        return speedup / first_speedup
    if latency_ms and first_latency_ms:
        return first_latency_ms / latency_ms
    return None


@dataclass
class CompressReport:
    """Rows for the original and after each step, verdicts, and the files written."""

    model: str
    out_dir: str
    runtime: str
    input_size: int
    rows: list[StepRow] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def add(self, row: StepRow) -> None:
        self.rows.append(row)

    def kept_rows(self) -> list[StepRow]:
        """The rows whose model was carried on (a quantization that did not pay can be measured and dropped)."""
        return [r for r in self.rows if r.notes.get("kept", True)]

    def verdicts(self) -> list[str]:
        """One line per step: speed-up and top-1 change against the kept row before, said plainly."""
        lines = []
        prev = self.rows[0] if self.rows else None
        for row in self.rows[1:]:
            parts = [f"{row.name}:"]
            gate = row.notes.get("gate")
            speed = gate["speedup"] if gate else row.speedup_over(prev)
            if speed is not None:
                parts.append(f"{speed:.2f}x the speed of the previous row" + (" (timed as a pair)" if gate else ""))
                if not row.notes.get("kept", True) and "gate" in row.notes:
                    parts.append("(did not pay here; the model before it was kept)")
                elif row.name.startswith(("int8", "bf16", "fp16")) and speed < 1.1:
                    parts.append("(quantization did not pay here)")
            if prev.top1 is not None and row.top1 is not None:
                parts.append(f"top-1 {row.top1 - prev.top1:+.2f} points")
            acc = row.notes.get("accuracy_gate")
            if acc and not row.notes.get("kept", True) and "gate" not in row.notes:
                parts.append(f"(lost {acc['lost']:.2f} points against the original, more than max_drop "
                             f"{acc['max_drop']:g}; the model before it was kept)")
            if prev.macs and row.macs != prev.macs:
                parts.append(f"MACs x{row.macs / prev.macs:.2f}")
            lines.append(" ".join(parts))
            if row.notes.get("kept", True):
                prev = row
        base = self.rows[0] if self.rows else None
        comp = self.reference.get("original_compiled_ms")
        if base and comp and self.rows[-1].latency_ms:
            lines.append(f"last row vs original compiled with torch.compile: {comp / self.rows[-1].latency_ms:.2f}x")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return dict(model=self.model, runtime=self.runtime, input_size=self.input_size,
                    rows=[asdict(r) for r in self.rows], reference=self.reference, verdicts=self.verdicts(),
                    files=self.files)

    def markdown(self) -> str:
        base = self.rows[0]
        lines = [f"# Compression report: {self.model}", "",
                 f"Latency: batch 1, {self.input_size} px, median of the latency engine's runs, measured in one "
                 f"process; speed-up is against the original row, paired round by round.", "",
                 "| step | params (M) | MACs (M) | size (MB) | latency (ms) | speed-up | runtime | top-1 |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lat = f"{r.latency_ms:.3f}" if r.latency_ms is not None else "-"
            speed = r.speedup_over(base)
            sp = f"{speed:.2f}x" if speed else "-"
            top1 = f"{r.top1:.2f}" if r.top1 is not None else "-"
            lines.append(f"| {r.name} | {r.params / 1e6:.3f} | {r.macs / 1e6:.1f} | {r.size_bytes / 1e6:.2f} | "
                         f"{lat} | {sp} | {r.runtime} | {top1} |")
        lines += ["", "## Verdicts", ""] + [f"- {v}" for v in self.verdicts()]
        extra = {k: v for r in self.rows for k, v in r.notes.items() if k.startswith("onnx_")}
        if extra:
            lines += ["", "## ONNX verification", ""] + [f"- {k}: {v}" for k, v in extra.items()]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [r.name for r in self.rows]
        panels = [("params (M)", [r.params / 1e6 for r in self.rows]), ("MACs (M)", [r.macs / 1e6 for r in self.rows]),
                  ("size (MB)", [r.size_bytes / 1e6 for r in self.rows]),
                  ("latency (ms)", [r.latency_ms or 0 for r in self.rows]), ("top-1 (%)", [r.top1 or 0 for r in self.rows])]
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
        for ax, (title, values) in zip(axes, panels):
            ax.bar(range(len(values)), values, color="tab:blue")
            ax.set_xticks(range(len(values)), names, rotation=40, ha="right", fontsize=8)
            ax.set_title(title)
        fig.suptitle(f"{self.model}: after each compression step")
        fig.tight_layout()
        return save_figure(fig, path)

    def write(self, out_dir: str | Path | None = None) -> dict[str, str]:
        """Write report.md, report.json and report.png (atomically) and return the paths of every file
        the run wrote (these and any others in ``files``, e.g. the sensitivity table's)."""
        out = Path(out_dir or self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.files.update(markdown=str(out / "report.md"), json=str(out / "report.json"), png=str(out / "report.png"))
        for key, text in (("markdown", self.markdown()), ("json", json.dumps(self.to_dict(), indent=2, default=str))):
            tmp = Path(self.files[key] + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.files[key])
        self.plot(self.files["png"])
        return self.files
