"""Per-epoch training records: CSV, TensorBoard events and a training-curve PNG."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Mapping

COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "top1", "top5", "ema_top1", "ema_top5",
           "images_per_s", "epoch_s")


class CurveLogger:
    """Append one row per epoch to ``out_dir/metrics.csv``, mirror it to TensorBoard
    (``out_dir/tb``) and draw ``out_dir/curve.png`` with ``plot()``. Reopening an existing run
    (resume) keeps the rows of earlier epochs and drops rows past ``resume_epoch``."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, resume_epoch: int | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "metrics.csv"
        self.png_path = self.out_dir / "curve.png"
        self.rows: list[dict[str, Any]] = []
        if resume_epoch is not None and self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                self.rows = [_parse(r) for r in csv.DictReader(f) if int(r["epoch"]) <= resume_epoch]
        self._write_csv()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=None if resume_epoch is None
                                        else resume_epoch + 1)

    def log(self, row: Mapping[str, Any]) -> None:
        """Record one epoch (keys from ``COLUMNS``; missing ones are left empty)."""
        row = {k: row.get(k) for k in COLUMNS}
        self.rows.append(row)
        self._write_csv()
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)) and not math.isnan(value):
                    self.writer.add_scalar(f"train/{key}", value, int(row["epoch"]))
            self.writer.flush()

    def _write_csv(self) -> None:
        tmp = self.csv_path.with_name(self.csv_path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for row in self.rows:
                w.writerow({k: ("" if v is None else v) for k, v in row.items()})
        os.replace(tmp, self.csv_path)

    def plot(self, title: str = "") -> Path:
        """Loss and top-1 against epoch, to ``curve.png``."""
        return plot_curves(self.png_path, self.rows,
                           left=[("train_loss", "train loss", 1.0), ("val_loss", "val loss", 1.0)],
                           right=[("top1", "top-1", 1.0), ("ema_top1", "EMA top-1", 1.0)],
                           left_label="loss", right_label="top-1 (%)", title=title)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


Series = list[tuple[str, str, float]]  # (row key, legend label, scale)


def plot_curves(png_path: Path, rows: list[Mapping[str, Any]], left: Series, right: Series, left_label: str,
                right_label: str, title: str = "") -> Path:
    """Two panels of per-epoch series (e.g. losses | accuracies) written atomically to ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, series, ylabel in ((axes[0], left, left_label), (axes[1], right, right_label)):
        for key, label, scale in series:
            pts = [(r["epoch"], scale * r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path


def _parse(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in COLUMNS:
        v = row.get(k, "")
        out[k] = None if v in ("", None) else (int(v) if k in ("epoch", "step") else float(v))
    return out
