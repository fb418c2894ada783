"""The run's compress step: fold, prune and quantize the winner, export it, measure each step."""

from __future__ import annotations

import sys
from dataclasses import replace

from .config import RunConfig
from .state import RunState, rel

def run_compress(cfg: RunConfig, state: RunState) -> dict:
    """Fold, prune and quantize the winner; export ONNX; measure."""
    from carve.compress import compress

    train = state.summary("train")
    out = state.step_dir("compress")
    winner = train["models"][train["winner"]]
    c, t = cfg.compress, cfg.train
    images = str(cfg.data_path("classify"))
    finetune = dict(train_per_class=t.train_per_class, batch_size=t.batch_size, bn_recalibration=t.bn_recalibration,
                    **c.finetune)
    zoo = state.summary("zoo")
    cc = replace(c, model=str(state.root / winner["weights"]), calib=images, eval=images, out_dir=str(out),
                 img_size=t.img_size, input_size=zoo["input_size"], eval_per_class=t.val_per_class,
                 threads=cfg.zoo.threads, finetune=finetune)
    print(f"[carve run] compress: {winner['name']} ({train['winner']}): {', '.join(s if isinstance(s, str) else s[0] for s in cc.plan())}",
          file=sys.stderr, flush=True)
    report = compress(cc)
    data = report.to_dict()
    onnx = next((r["notes"]["onnx"] for r in data["rows"] if str(r["notes"].get("onnx", "")).endswith(".onnx")), None)
    rows = [dict(step=r["name"], params_m=round(r["params"] / 1e6, 3), macs_m=round(r["macs"] / 1e6, 1),
                 size_mb=round(r["size_bytes"] / 1e6, 3), latency_ms=r["latency_ms"], runtime=r["runtime"],
                 top1=r["top1"], kept=r["notes"].get("kept", True)) for r in data["rows"]]
    return dict(winner=train["winner"], name=winner["name"], input_size=data["input_size"], runtime=c.runtime,
                rows=rows, verdicts=data["verdicts"], onnx=rel(state, onnx), chart=rel(state, report.files.get("png")),
                markdown=rel(state, report.files.get("markdown")))
