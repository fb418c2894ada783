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
    from carve.compress.pipeline import pipeline

    train = state.summary("train")
    out = state.step_dir("compress")
    winner = train["models"][train["winner"]]
    c, t = cfg.compress, cfg.train
    steps: list = []
    for name in c.steps:
        if name == "prune":
            target = {"ratio": c.prune_ratio} if c.prune_macs is None else {"target_macs": c.prune_macs}
            steps.append(("prune", {**target, "finetune_epochs": c.finetune_epochs}))
        elif name == "quantize":
            q = {"precision": "int8", "calib_images": c.calib_images}
            if c.int8_min_speedup is not None:
                q["min_speedup"] = c.int8_min_speedup
            steps.append(("quantize", q))
        else:
            steps.append(name)
    if c.onnx:
        steps.append("export")
    cifar = str(cfg.data_path("cifar10"))
    print(f"[carve run] compress: {winner['name']} ({train['winner']}): {', '.join(map(str, c.steps))}",
          file=sys.stderr, flush=True)
    report = pipeline(str(state.root / winner["checkpoint"]), steps, calib=cifar, eval=cifar, out_dir=str(out),
                      runtime=c.runtime, img_size=t.img_size, eval_per_class=t.val_per_class or 0,
                      calib_per_class=max(1, c.calib_images // 10), threads=cfg.zoo.threads,
                      finetune=dict(train_per_class=t.train_per_class or 0, batch_size=t.batch_size,
                                    bn_recalibration=t.bn_recalibration, lr=c.finetune_lr))
    data = report.to_dict()
    onnx = next((r["notes"]["onnx"] for r in data["rows"] if str(r["notes"].get("onnx", "")).endswith(".onnx")), None)
    rows = [dict(step=r["name"], params_m=round(r["params"] / 1e6, 3), macs_m=round(r["macs"] / 1e6, 1),
                 size_mb=round(r["size_bytes"] / 1e6, 3), latency_ms=r["latency_ms"], runtime=r["runtime"],
                 top1=r["top1"], kept=r["notes"].get("kept", True)) for r in data["rows"]]
    return dict(winner=train["winner"], name=winner["name"], input_size=data["input_size"], runtime=c.runtime,
                rows=rows, verdicts=data["verdicts"], onnx=rel(state, onnx), chart=rel(state, report.files.get("png")),
                markdown=rel(state, report.files.get("markdown")))
