"""The run's last two stage steps: detection transfer (finetune) and compression of the winner."""

from __future__ import annotations

import sys

from .config import RunConfig
from .stage_steps import rel
from .state import RunState, write_json

DETECTION_METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def run_finetune_step(cfg: RunConfig, state: RunState) -> dict:
    """Transfer both trained backbones to SSDLite detection on coco128 and evaluate mAP."""
    from carve.finetune import DetectConfig, detect

    train = state.summary("train")
    out = state.step_dir("finetune")
    f = cfg.finetune
    models = {}
    for role, m in train["models"].items():
        role_dir = out / role
        print(f"[carve run] finetune: {role} ({m['name']}) -> SSDLite on coco128", file=sys.stderr, flush=True)
        dc = DetectConfig(backbone=str(state.root / m["spec"]), pretrained=str(state.root / m["checkpoint"]),
                          head="ssdlite", data=str(cfg.data_path("coco128")), out_dir=str(role_dir),
                          img_size=f.img_size, epochs=f.epochs, max_steps=f.max_steps or 0, batch_size=f.batch_size,
                          lr=f.lr, seed=cfg.seed, resume=(role_dir / "last.pt").is_file(), examples=4)
        res = detect(dc)
        metrics = {k: res.metrics.get(k) for k in DETECTION_METRICS}
        models[role] = dict(name=m["name"], **metrics, examples=rel(state, res.examples_png),
                            checkpoint=rel(state, res.checkpoint), num_train=res.num_train, num_val=res.num_val,
                            wall_s=round(res.wall_s, 1))
    write_json(out / "metrics.json", models)
    return dict(models=models, head="ssdlite", img_size=f.img_size, epochs=f.epochs, max_steps=f.max_steps)


def run_compress_step(cfg: RunConfig, state: RunState) -> dict:
    """Fold, prune and quantize the winner; export ONNX; measure."""
    from carve.compress import pipeline

    train = state.summary("train")
    out = state.step_dir("compress")
    winner = train["models"][train["winner"]]
    c = cfg.compress
    report = pipeline(str(state.root / winner["checkpoint"]), list(c.steps), calib=str(cfg.data_path("cifar10")),
                      eval=str(cfg.data_path("cifar10")), out_dir=str(out))
    data = report.as_dict() if hasattr(report, "as_dict") else dict(report.__dict__)
    write_json(out / "summary.json", data)
    return dict(winner=train["winner"], name=winner["name"], rows=data.get("rows", []), onnx=rel(state, data.get("onnx")),
                chart=rel(state, data.get("png")), markdown=rel(state, data.get("markdown")))
