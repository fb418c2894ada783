"""Training curves of a detection run on top of carve.train's CurveLogger.

CurveLogger keeps the per-epoch CSV (``metrics.csv``: epoch, step, lr, train_loss, images/s) and
TensorBoard events; its columns are those of classification, so the detection numbers (AP, AP50,
AP75, the loss terms) go to TensorBoard under ``detect/`` and into ``history.json``, and
``curves.png`` plots loss and AP against epoch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

DETECT_KEYS = ("AP", "AP50", "AP75")


class DetectCurves:
    def __init__(self, out_dir: str | Path, tensorboard: bool = True, resume_epoch: int | None = None):
        from carve.train import CurveLogger

        self.out_dir = Path(out_dir)
        self.base = CurveLogger(self.out_dir, tensorboard, resume_epoch=resume_epoch)
        self.rows: list[dict[str, Any]] = []
        self.png_path = self.out_dir / "curves.png"

    def log(self, row: Mapping[str, Any], history: list[dict[str, Any]] | None = None) -> None:
        """Record one epoch; ``history`` (all epochs so far) feeds the plot after a resume."""
        self.base.log(row)
        self.rows = list(history) if history is not None else self.rows + [dict(row)]
        writer = self.base.writer
        if writer is not None:
            for key, value in row.items():
                if (key in DETECT_KEYS or key.startswith("loss_")) and isinstance(value, (int, float)) \
                        and not math.isnan(value):
                    writer.add_scalar(f"detect/{key}", value, int(row["epoch"]))
            writer.flush()

    def plot(self, title: str = "") -> Path:
        """Loss and AP / AP50 (percent) against epoch, to ``curves.png``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        epochs = [r["epoch"] for r in self.rows]
        ax1.plot(epochs, [r["train_loss"] for r in self.rows], marker="o", label="train loss")
        for key in ("AP", "AP50"):
            pts = [(r["epoch"], 100 * r[key]) for r in self.rows if isinstance(r.get(key), (int, float))]
            if pts:
                ax2.plot(*zip(*pts), marker="o", label=f"val {key}")
        ax1.set(xlabel="epoch", ylabel="loss")
        ax2.set(xlabel="epoch", ylabel="COCO AP (%)")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        tmp = self.png_path.with_name("curves.tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, self.png_path)
        return self.png_path

    def close(self) -> None:
        self.base.close()
