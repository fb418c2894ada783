"""The report's charts, drawn with matplotlib (Agg) into PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FAMILY_COLOURS = {"mobilenet_v1": "#8c564b", "mobilenet_v2": "#1f77b4", "mobilenet_v3_large": "#2ca02c",
                  "mobilenet_v3_small": "#98df8a", "shufflenet_v2": "#ff7f0e", "efficientnet": "#d62728",
                  "rexnet": "#9467bd", "carve": "#17becf"}


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def zoo_chart(rows: list[dict], budget_ms: float, reference: str, path: Path, runtime: str = "eager",
              input_size: int = 224) -> Path:
    """Measured latency against MACs per zoo model, coloured by family, with the budget line."""
    fig, ax = plt.subplots(figsize=(8, 5))
    seen = set()
    for r in rows:
        colour = FAMILY_COLOURS.get(r["family"], "#7f7f7f")
        label = r["family"] if r["family"] not in seen else None
        seen.add(r["family"])
        ax.scatter(r["macs_m"], r["latency_ms"], color=colour, label=label, s=36,
                   edgecolor="black" if r["name"] == reference else "none", zorder=3)
        ax.annotate(r["name"], (r["macs_m"], r["latency_ms"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axhline(budget_ms, color="red", linestyle="--", linewidth=1, label=f"budget {budget_ms:.2f} ms ({reference})")
    ax.set_xlabel(f"MACs (M, {input_size} px)")
    ax.set_ylabel(f"measured latency (ms, batch 1, {input_size} px, {runtime})")
    ax.set_title("Zoo: latency on this machine vs MACs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def curves_chart(histories: dict[str, list[dict]], path: Path) -> Path:
    """Validation top-1 and training loss per epoch for each trained model."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
    for name, hist in histories.items():
        epochs = [h.get("epoch", i + 1) for i, h in enumerate(hist)]
        top1 = [h.get("val_top1", h.get("top1")) for h in hist]
        loss = [h.get("train_loss", h.get("loss")) for h in hist]
        if any(v is not None for v in top1):
            a1.plot(epochs, top1, "o-", label=name)
        if any(v is not None for v in loss):
            a2.plot(epochs, loss, "o-", label=name)
    a1.set_xlabel("epoch")
    a1.set_ylabel("validation top-1 (%)")
    a2.set_xlabel("epoch")
    a2.set_ylabel("training loss")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle("Training curves (CIFAR-10)")
    return _save(fig, path)
