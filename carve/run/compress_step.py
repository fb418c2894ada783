"""The run's compress step: fold, prune and quantize the winner, export it, measure each step."""

from __future__ import annotations

import sys
from dataclasses import replace

from .config import RunConfig
from .state import RunState, rel

# the compress stage's flow for each deploy runtime: where INT8 is built and every row is timed
COMPRESS_RUNTIME = {"eager": "torch", "compile": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}


def compress_runtime(deploy: str) -> str:
    """The compress stage's runtime for the run's deploy runtime ``deploy`` (zoo.runtime)."""
    if deploy not in COMPRESS_RUNTIME:
        raise ValueError(f"zoo.runtime: the compress step times and quantizes in {', '.join(COMPRESS_RUNTIME)}, "
                         f"not {deploy!r}; run the other steps with --steps (e.g. zoo,search,train,finetune)")
    return COMPRESS_RUNTIME[deploy]


def finetune_settings(cfg: RunConfig) -> dict:
    """The KD finetune after pruning: the train step's images per class, batch and BatchNorm
    re-estimation, unless ``compress.finetune`` sets its own."""
    t = cfg.train
    return dict(train_per_class=t.train_per_class, batch_size=t.batch_size,
                bn_recalibration=t.bn_recalibration) | cfg.compress.finetune


def run_compress(cfg: RunConfig, state: RunState) -> dict:
    """Fold, prune and quantize the winner in the deploy runtime; export it; measure."""
    from carve.compress import compress

    train = state.summary("train")
    out = state.step_dir("compress")
    winner = train["models"][train["winner"]]
    c, t = cfg.compress, cfg.train
    images = str(cfg.data_path("classify"))
    finetune = finetune_settings(cfg)
    zoo = state.summary("zoo")
    runtime = compress_runtime(zoo["runtime"])
    export = list(c.export) + (["openvino"] if runtime == "openvino" and "openvino" not in c.export else [])
    cc = replace(c, model=str(state.root / winner["weights"]), calib=images, eval=images, out_dir=str(out),
                 img_size=t.img_size, input_size=zoo["input_size"], eval_per_class=t.val_per_class,
                 threads=cfg.zoo.threads, protocol=cfg.zoo.protocol, finetune=finetune, runtime=runtime,
                 export=export)
    print(f"[carve run] compress: {winner['name']} ({train['winner']}): {', '.join(s if isinstance(s, str) else s[0] for s in cc.plan())}",
          file=sys.stderr, flush=True)
    report = compress(cc)
    data = report.to_dict()
    fmt, suffix = ("openvino", ".xml") if runtime == "openvino" else ("onnx", ".onnx")
    deployable = next((r["notes"][fmt] for r in data["rows"] if str(r["notes"].get(fmt, "")).endswith(suffix)), None)
    rows = [dict(step=r["name"], params_m=round(r["params"] / 1e6, 3), macs_m=round(r["macs"] / 1e6, 1),
                 size_mb=round(r["size_bytes"] / 1e6, 3), latency_ms=r["latency_ms"], runtime=r["runtime"],
                 top1=r["top1"], kept=r["notes"].get("kept", True), dropped=_dropped(r["notes"]),
                 speedup=r.get("speedup"), gate_speedup=(r["notes"].get("gate") or {}).get("speedup"))
            for r in data["rows"]]
    return dict(winner=train["winner"], name=winner["name"], input_size=data["input_size"], runtime=runtime,
                max_drop=c.max_drop,
                rows=rows, verdicts=data["verdicts"], deployable=rel(state, deployable), chart=rel(state, report.files.get("png")),
                markdown=rel(state, report.files.get("markdown")))


def speed_over(row: dict, first: dict) -> float | None:
    """How many times faster than ``first`` a row of the compress step's summary ran (``speed_between``)."""
    from carve.compress.report import speed_between

    return speed_between(row.get("speedup"), row.get("latency_ms"), first.get("speedup"), first.get("latency_ms"))


def _dropped(notes: dict) -> str | None:
    """Why a step was not kept: "speed" (it did not pay) or "accuracy" (past max_drop); None when kept."""
    if notes.get("kept", True):
        return None
    return "speed" if "gate" in notes else "accuracy"
