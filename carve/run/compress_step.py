"""The run's compress step: fold, prune and quantize the winner, export it, measure each step."""

from __future__ import annotations

import sys

from .config import RunConfig
from .state import RunState, rel

def run_compress(cfg: RunConfig, state: RunState) -> dict:
    """Fold, prune and quantize the winner; export ONNX; measure."""
    from carve.compress.stepwise import pipeline

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
