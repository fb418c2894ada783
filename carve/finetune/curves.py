"""Training curves of a detection run on top of carve.train's CurveLogger.

CurveLogger keeps the per-epoch CSV (``metrics.csv``: epoch, step, lr, train_loss, images/s) and
TensorBoard events; its columns are those of classification, so the detection numbers (AP, AP50,
AP75, the loss terms) go to TensorBoard under ``detect/`` and into ``history.json``, and
``curves.png`` plots loss and AP against epoch.
"""

from __future__ import annotations

import math
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
        from carve.train.reporting import plot_curves

        return plot_curves(self.png_path, self.rows, left=[("train_loss", "train loss", 1.0)],
                           right=[(k, f"val {k}", 100.0) for k in ("AP", "AP50")],
                           left_label="loss", right_label="COCO AP (%)", title=title)

    def close(self) -> None:
        self.base.close()
