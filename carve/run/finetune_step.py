"""The run's finetune step: both trained backbones transferred to detection."""

from __future__ import annotations

import sys
from dataclasses import replace

from carve.files import write_json

from .config import RunConfig
from .state import RunState, rel

DETECTION_METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def run_finetune(cfg: RunConfig, state: RunState) -> dict:
    """Transfer both trained backbones to detection and evaluate COCO mAP."""
    from carve.finetune import detect

    train = state.summary("train")
    out = state.step_dir("finetune")
    models, prior = {}, None
    for role, m in train["models"].items():
        role_dir = out / role
        data = cfg.data_path("detect")
        print(f"[carve run] finetune: {role} ({m['name']}) -> {cfg.finetune.head} on {data.name}", file=sys.stderr,
              flush=True)
        dc = replace(cfg.finetune, backbone=str(state.root / m["weights"]), data=str(data), out_dir=str(role_dir),
                     seed=cfg.seed, resume=(role_dir / "last.pt").is_file())
        res = detect(dc)
        metrics = {k: res.metrics.get(k) for k in DETECTION_METRICS}
        models[role] = dict(name=m["name"], **metrics, examples=rel(state, res.examples_png),
                            checkpoint=rel(state, res.checkpoint), num_train=res.num_train, num_val=res.num_val,
                            wall_s=round(res.wall_s, 1))
        prior = res.metrics.get("prior", prior)
    write_json(out / "metrics.json", models)
    f = cfg.finetune
    return dict(models=models, prior=prior, head=f.head, img_size=f.img_size, epochs=f.epochs, max_steps=f.max_steps,
                data=cfg.data_path("detect").name)
