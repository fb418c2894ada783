"""The run's finetune step: both trained backbones transferred to detection."""

from __future__ import annotations

import statistics
import sys
from dataclasses import replace

from carve.files import write_json

from .config import RunConfig
from .side_by_side import one_thread_each, worker_count
from .state import RunState, rel

DETECTION_METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def run_finetune(cfg: RunConfig, state: RunState) -> dict:
    """Transfer both trained backbones to detection, once per seed, and evaluate COCO mAP.

    Each metric is the mean over the seeds; each seed's figures are kept beside it."""
    from carve.finetune import detect

    train = state.summary("train")
    out = state.step_dir("finetune")
    f = cfg.finetune
    base = f.detect_config()
    seeds = [cfg.seed + i for i in range(f.seeds)]
    data = cfg.data_path("detect")
    runs = [(role, m, seed, out / (role if i == 0 else f"{role}_seed{seed}"))
            for role, m in train["models"].items() for i, seed in enumerate(seeds)]
    side_by_side = worker_count(cfg.jobs, len(runs)) > 1
    configs = [replace(base, backbone=str(state.root / m["weights"]), data=str(data), out_dir=str(run_dir), seed=seed,
                       resume=(run_dir / "last.pt").is_file(), progress=base.progress and not side_by_side)
               for role, m, seed, run_dir in runs]
    print(f"[carve run] finetune: {len(runs)} finetunes ({', '.join(train['models'])} x seeds "
          f"{', '.join(map(str, seeds))}) -> {f.head} on {data.name}, each on one thread"
          f"{', side by side' if side_by_side else ''}", file=sys.stderr, flush=True)
    finished = [0]

    def report(i: int, result) -> None:
        role, m, seed, _ = runs[i]
        finished[0] += 1
        ap50 = result.metrics.get("AP50")
        print(f"[carve run] finetune: {role} ({m['name']}), seed {seed}: AP50 "
              f"{'-' if ap50 is None else f'{100 * ap50:.2f} %'} in {result.wall_s:.0f} s "
              f"({finished[0]}/{len(runs)})", file=sys.stderr, flush=True)

    # a backbone's MACs foretell its finetune's time: the larger ones start first
    results = one_thread_each(detect, configs, cfg.jobs, on_done=report, cost=[m["macs_m"] for _, m, _, _ in runs])
    models, prior = {}, None
    for role, m in train["models"].items():
        mine = [r for (r_role, *_), r in zip(runs, results) if r_role == role]
        prior = next((r.metrics["prior"] for r in mine if "prior" in r.metrics), prior)
        first = mine[0]
        models[role] = dict(name=m["name"], **seed_summary([r.metrics for r in mine]), seeds=seeds,
                            examples=rel(state, first.examples_png), checkpoint=rel(state, first.checkpoint),
                            num_train=first.num_train, num_val=first.num_val,
                            wall_s=round(sum(r.wall_s for r in mine), 1))
    write_json(out / "metrics.json", models)
    return dict(models=models, prior=prior, head=f.head, img_size=f.img_size, epochs=f.epochs, max_steps=f.max_steps,
                data=data.name, seeds=seeds)


def seed_summary(runs: list[dict]) -> dict:
    """Each detection metric's mean over the seeds' ``runs``, the per-seed values (``per_seed``) and
    the sample standard deviation of AP and AP50 (``AP_std``, ``AP50_std``; 0 for one seed)."""
    out: dict = {}
    per_seed = {k: [r.get(k) for r in runs] for k in DETECTION_METRICS}
    for k, values in per_seed.items():
        known = [v for v in values if v is not None]
        out[k] = statistics.fmean(known) if known else None
    for k in ("AP", "AP50"):
        known = [v for v in per_seed[k] if v is not None]
        out[f"{k}_std"] = statistics.stdev(known) if len(known) > 1 else 0.0
    out["per_seed"] = per_seed
    return out
