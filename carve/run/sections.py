"""The report's chapter for each step: ``render(summary, state, cfg, out_dir) -> list[Block]``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .blocks import Block, Image, Para, Table
from .compress_step import speed_over
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


def search_section(s: dict, state: RunState, cfg: RunConfig, out: Path) -> list[Block]:
    ref, best = s["reference"], s["best"]
    pareto = s["pareto"]
    rows = [[f"trial {e['number']}", e["accuracy"], e["latency_ms"], e.get("remeasured_ms"),
             round(e["params"] / 1e6, 3), round(e["macs"] / 1e6, 1), e["resolution"]] for e in pareto]
    rows.append([f"{ref['name']} (hand-designed reference)", ref["accuracy"], ref["latency_ms"], None, None, None, None])
    best_row = next(i for i, e in enumerate(pareto) if e["number"] == best["number"])
    verdict = ("more accurate than" if best["accuracy"] > ref["accuracy"] else "not more accurate than")
    return [Para(f"Space '{s['space']}', Optuna study '{s['study']}' in {s['storage']} (SQLite, resumable): "
                 f"{s['n_complete']} complete and {s['n_failed']} failed trials, latency budget "
                 f"{s['budget_ms']:.2f} ms. {_estimator(s, cfg)} The hand-designed reference is scored by "
                 f"the same objective."),
            Para(f"Most accurate feasible trial: {best['number']} with estimated top-1 {best['accuracy']:.2f} % at "
                 f"{best['latency_ms']:.2f} ms, {verdict} {ref['name']} ({ref['accuracy']:.2f} % at "
                 f"{ref['latency_ms']:.2f} ms) under the same estimate. Its spec: {best['spec']}.", "note"),
            Table(["Pareto trial", "estimated top-1 (%)", "latency (ms)", "re-measured (ms)", "params (M)", "MACs (M)",
                   "resolution"], rows, highlight={best_row}),
            *_img(state, s.get("chart"), "Every trial's estimated accuracy against latency; blue: the Pareto front; red "
                                         "star: the hand-designed reference under the same objective; green lines: "
                                         "the zoo models' measured latency; dashed: the budget.")]


def _estimator(s: dict, cfg: RunConfig) -> str:
    if s.get("estimator") == "supernet":
        return (f"Each trial is a sub-network of the shipped supernet {s.get('supernet')} with its weights, its "
                f"BatchNorm statistics re-estimated, scored by top-1 on held-out images of "
                f"{Path(cfg.data.classify).name} and by its latency measured in the deploy runtime."
                + (f" The first trials are its nearest sub-networks to {', '.join(s['warm_start'])}, so the search "
                   f"starts where the hand design is." if s.get("warm_start") else ""))
    if s.get("estimator") == "inherited":
        base = str(s.get("inherit_from", "")).partition("@")[0]
        return (f"Each trial is a channel sub-network of {base} that inherits its shipped weights, its BatchNorm "
                f"statistics re-estimated, scored by top-1 on held-out images of {Path(cfg.data.classify).name} "
                f"and by its latency measured in the deploy runtime.")
    return f"Each trial is scored by the '{s.get('estimator', 'proxy')}' accuracy estimate and its measured latency."


def train_section(s: dict, state: RunState, cfg: RunConfig, out: Path) -> list[Block]:
    m = s["models"]
    roles = ["found", "hand_designed"]
    rows = [[f"{r.replace('_', '-')}: {m[r]['name']}", m[r]["top1"], m[r]["best_top1"],
             m[r]["latency_ms"], m[r]["params_m"], m[r]["macs_m"], m[r]["epochs"], m[r]["wall_s"]] for r in roles]
    f, h = m["found"], m["hand_designed"]
    data = Path(cfg.data.classify).name
    return [Para(f"Footing: {s.get('footing', 'both start from random initialisation')}. Both then train with the "
                 f"same recipe ({f['epochs']} epoch(s) on {data}, {cfg.train.img_size} px) and are evaluated on "
                 f"its held-out images; latency measured at the deploy resolution in one process, interleaved, by "
                 f"the {s['latency_engine']}."),
            Para(f"Found model: {f['top1']:.2f} % top-1 at {f['latency_ms']:.2f} ms; {h['name']}: {h['top1']:.2f} % "
                 f"at {h['latency_ms']:.2f} ms; the found model is {s['speedup_found_vs_hand']:.2f}x the speed of "
                 f"the hand-designed one. Winner (carried to compression): {s['winner'].replace('_', '-')}.", "note"),
            Table(["model", "final top-1 (%)", "best top-1 (%)", "latency (ms)", "params (M)", "MACs (M)", "epochs",
                   "train time (s)"], rows, highlight={roles.index(s["winner"])}),
            *_img(state, s.get("chart"), "Validation top-1 and training loss per epoch for both models.")]


def finetune_section(s: dict, state: RunState, cfg: RunConfig, out: Path) -> list[Block]:
    m = s["models"]
    pct = lambda v: None if v is None else round(100 * v, 2)  # noqa: E731
    seeds = s.get("seeds") or [cfg.seed]
    rows = [[f"{r.replace('_', '-')}: {m[r]['name']}", pct(m[r]["AP"]), pct(m[r]["AP50"]),
             pct(m[r].get("AP50_std", 0.0)), pct(m[r]["AP75"]), m[r]["num_train"], m[r]["num_val"], m[r]["wall_s"]]
            for r in ("found", "hand_designed")]
    prior = s.get("prior")
    if prior:
        rows.append(["no-image prior: 3 centred boxes per image", pct(prior["AP"]), pct(prior["AP50"]), None, None, 0,
                     m["found"]["num_val"], None])
    budget = f"{s['epochs']} epoch(s)" + (f", at most {s['max_steps']} steps" if s.get("max_steps") else "")
    blocks: list[Block] = [
        Para(f"Both trained backbones (one weights file each) transferred to {s['head']} detection on "
             f"{s.get('data', Path(cfg.data.detect).name)} at {s['img_size']} px with the same short budget "
             f"({budget}), once per seed ({', '.join(str(x) for x in seeds)}); COCO box mAP on the held-out "
             f"images (pycocotools), the mean over the seeds, with the seeds' standard deviation of AP50 "
             f"(time: all seeds). The last row is what a "
             f"detector that sees no image scores (three centred boxes of the commonest class per image): a "
             f"backbone's figures mean something only well above it."),
        Table(["backbone", "AP (%)", "AP50 (%)", "AP50 sd", "AP75 (%)", "train images", "val images", "time (s)"],
              rows)]
    for r in ("found", "hand_designed"):
        blocks += _img(state, m[r].get("examples"), f"Detections on validation images, {r.replace('_', '-')} "
                                                    f"backbone {m[r]['name']}: true boxes green, predicted boxes "
                                                    f"above the score threshold red.")
    return blocks


def compress_section(s: dict, state: RunState, cfg: RunConfig, out: Path) -> list[Block]:
    rows = s["rows"]
    speeds = [speed_over(r, rows[0]) for r in rows]
    table = Table(["step", "params (M)", "MACs (M)", "size (MB)", "latency (ms)", "speed-up", "runtime",
                   "held-out top-1 (%)"],
                  [[r["step"], r["params_m"], r["macs_m"], r["size_mb"], r["latency_ms"],
                    f"{x:.2f}x" if x else None, r["runtime"], r["top1"]] for r, x in zip(rows, speeds)])
    blocks: list[Block] = [
        Para(f"The winner ({s['winner'].replace('_', '-')}: {s['name']}) compressed step by step; every row measured "
             f"in one process at batch 1 and {s['input_size']} px (the deploy resolution) in {s['runtime']}, "
             f"top-1 on the held-out images of {Path(cfg.data.classify).name} at {cfg.train.img_size} px. A step "
             f"that does not make the model at least {cfg.compress.keep_if_faster or 1}x faster"
             + (f", or takes the top-1 lost against the original past {s['max_drop']:g} point(s) (INT8 returns "
                f"its most sensitive blocks to FP32 to stay within it)" if s.get("max_drop") is not None else "")
             + f", is reported and dropped. Deployable file: {s.get('deployable', s.get('onnx')) or 'none written'}."),
        table]
    if s.get("verdicts"):
        blocks.append(Para("Verdicts: " + "; ".join(s["verdicts"]), "note"))
    return blocks + _img(state, s.get("chart"), "Parameters, MACs, size, latency and top-1 after each step.")


SECTIONS: dict[str, tuple[str, Callable[[dict, RunState, RunConfig, Path], list[Block]]]] = {
    "zoo": ("1. Zoo: the hand-designed models on this machine", zoo_section),
    "search": ("2. Search: multi-objective search under the budget", search_section),
    "train": ("3. Train: found vs hand-designed, same footing, same recipe", train_section),
    "finetune": ("4. Finetune: detection transfer", finetune_section),
    "compress": ("5. Compress: fold, prune, quantize the winner", compress_section),
}
