"""The report's chapter for each step: ``render(summary, state, cfg, out_dir) -> list[Block]``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .blocks import Block, Image, Para, Table
from .config import RunConfig
from .state import RunState


def _img(state: RunState, rel: str | None, caption: str) -> list[Block]:
    if not rel:
        return []
    path = state.root / rel
    return [Image(path, caption)] if path.is_file() else [Para(f"(image {rel} is missing)", "missing")]


def zoo_section(s: dict, state: RunState, cfg: RunConfig, out: Path) -> list[Block]:
    rows = s["models"]
    table = Table(["model", "family", "params (M)", "MACs (M)", "latency (ms)", "p10–p90 (ms)",
                   "ImageNet top-1 (published)", "within budget"],
                  [[r["name"], r["family"], r["params_m"], r["macs_m"], r["latency_ms"],
                    f"{r['p10_ms']:.2f}–{r['p90_ms']:.2f}", r["imagenet_top1"],
                    "yes" if r["latency_ms"] <= s["budget_ms"] else "no"] for r in rows],
                  highlight={i for i, r in enumerate(rows) if r["name"] in (s["reference"], s["hand_designed"])})
    return [Para(f"{len(rows)} zoo models profiled at {s['input_size']} px: parameters, MACs (convolution and "
                 f"matmul multiply-adds) and latency at batch 1 measured on this machine by the "
                 f"{s['engine']}. Latency budget: {s['budget_ms']:.2f} ms ({s['budget_source']}). Strongest "
                 f"hand-designed model within the budget (best published ImageNet top-1): {s['hand_designed']}."),
            table, *_img(state, s.get("chart"), "Measured latency vs MACs of every zoo model; the dashed line is "
                                                "the latency budget. Models below it fit the budget.")]


def generic_section(s: dict, state: RunState, cfg: RunConfig, out: Path) -> list[Block]:
    scalars = [[k, v] for k, v in s.items() if isinstance(v, (int, float, str)) or v is None]
    return [Table(["field", "value"], scalars)]


SECTIONS: dict[str, tuple[str, Callable[[dict, RunState, RunConfig, Path], list[Block]]]] = {
    "zoo": ("1. Zoo: the hand-designed models on this machine", zoo_section),
    "search": ("2. Search: multi-objective search under the budget", generic_section),
    "train": ("3. Train: found vs hand-designed on CIFAR-10", generic_section),
    "finetune": ("4. Finetune: SSDLite detection on coco128", generic_section),
    "compress": ("5. Compress: fold, prune, quantize the winner", generic_section),
}
