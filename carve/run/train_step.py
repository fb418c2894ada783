"""The run's train step: the found and the hand-designed model with one recipe."""

from __future__ import annotations

import sys

from carve.files import write_json

from .config import RunConfig
from .state import RunState, rel

def run_train(cfg: RunConfig, state: RunState) -> dict:
    """Train the best found model and the strongest hand-designed model with the same short recipe."""
    from carve.train import TrainConfig, fit
    from carve.zoo import create_model, load_spec, profile

    from . import plots
    from .latency import measure_many

    zoo, search = state.summary("zoo"), state.summary("search")
    out = state.step_dir("train")
    t = cfg.train
    candidates = {"found": load_spec(state.root / search["best"]["spec"]).replace(name="carve_found"),
                  "hand_designed": create_model(zoo["hand_designed"]).spec}
    models, histories = {}, {}
    for role, spec in candidates.items():
        tc = TrainConfig(model=spec.with_num_classes(10), data=str(cfg.data_path("cifar10")), out_dir=str(out / role),
                         epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, aug=t.aug,
                         img_size=t.img_size, small_input=t.small_input, train_per_class=t.train_per_class or 0,
                         val_per_class=t.val_per_class or 0, seed=cfg.seed, workers=t.workers,
                         warmup_epochs=t.warmup_epochs, cutmix_alpha=t.cutmix, mix_prob=0.5 if t.cutmix else 0.0,
                         bn_recalibration=t.bn_recalibration, resume=(out / role / "last.pt").is_file())
        print(f"[carve run] train: {role} ({spec.name})", file=sys.stderr, flush=True)
        res = fit(tc)
        deploy_spec = spec.with_num_classes(10).save(out / role / "deploy_spec.json")
        prof = profile(create_model(spec.with_num_classes(10)), zoo["input_size"])
        histories[f"{role}: {spec.name}"] = res.history
        models[role] = dict(name=spec.name, top1=round(float(res.final_top1), 2), best_top1=round(float(res.best_top1), 2),
                            params_m=round(prof.params / 1e6, 3), macs_m=round(prof.macs / 1e6, 1),
                            checkpoint=rel(state, res.best_path or res.last_path), spec=rel(state, deploy_spec),
                            wall_s=round(res.wall_s, 1),
                            images_per_s=round(res.images_per_s, 1), epochs=t.epochs)
    # both deployable models timed in one process, interleaved, for their ratio
    deploy = {role: create_model(spec.with_num_classes(10)).eval() for role, spec in candidates.items()}
    timings, engine = measure_many(deploy, zoo["input_size"], zoo["runtime"], cfg.zoo.protocol, cfg.zoo.threads)
    for role, timing in timings.items():
        models[role]["latency_ms"] = round(timing.median_ms, 3)
    ratio = timings["hand_designed"].ratio  # hand-designed latency / found latency = the found model's speed-up
    write_json(out / "histories.json", histories)
    plots.curves_chart(histories, out / "curves.png")
    winner = "found" if models["found"]["top1"] >= models["hand_designed"]["top1"] else "hand_designed"
    return dict(models=models, winner=winner, speedup_found_vs_hand=round(ratio, 3), latency_engine=engine,
                budget_ms=zoo["budget_ms"], chart=rel(state, out / "curves.png"), histories=rel(state, out / "histories.json"))
