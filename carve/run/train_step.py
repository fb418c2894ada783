"""The run's train step: the found and the hand-designed model with one recipe."""

from __future__ import annotations

import sys
from dataclasses import replace

from carve.files import write_json

from .config import RunConfig
from .state import RunState, rel


def run_train(cfg: RunConfig, state: RunState) -> dict:
    """Train the best found model and the strongest hand-designed model with the same short recipe."""
    from carve.latency import PROTOCOLS, compare
    from carve.train import fit
    from carve.zoo import create_model, load_spec, profile

    from . import plots

    zoo, search = state.summary("zoo"), state.summary("search")
    out = state.step_dir("train")
    candidates = {"found": load_spec(state.root / search["best"]["spec"]).replace(name="carve_found"),
                  "hand_designed": create_model(zoo["hand_designed"]).spec}
    models, histories = {}, {}
    for role, spec in candidates.items():
        tc = replace(cfg.train, model=spec.with_num_classes(10), data=str(cfg.data_path("cifar10")),
                     out_dir=str(out / role), seed=cfg.seed, resume=(out / role / "last.pt").is_file())
        print(f"[carve run] train: {role} ({spec.name})", file=sys.stderr, flush=True)
        res = fit(tc)
        deploy_spec = spec.with_num_classes(10).save(out / role / "deploy_spec.json")
        prof = profile(create_model(spec.with_num_classes(10)), zoo["input_size"])
        histories[f"{role}: {spec.name}"] = res.history
        models[role] = dict(name=spec.name, top1=round(float(res.final_top1), 2), best_top1=round(float(res.best_top1), 2),
                            params_m=round(prof.params / 1e6, 3), macs_m=round(prof.macs / 1e6, 1),
                            checkpoint=rel(state, res.best_path or res.last_path), spec=rel(state, deploy_spec),
                            wall_s=round(res.wall_s, 1),
                            images_per_s=round(res.images_per_s, 1), epochs=cfg.train.epochs)
    # both deployable models timed in one process, interleaved, for their ratio
    deploy = {role: create_model(spec.with_num_classes(10)).eval() for role, spec in candidates.items()}
    timed = compare(list(deploy.values()), names=list(deploy), input_size=zoo["input_size"], runtime=zoo["runtime"],
                    threads=cfg.zoo.threads, protocol=PROTOCOLS[cfg.zoo.protocol], progress=True)
    for role, result in zip(deploy, timed.results):
        models[role]["latency_ms"] = round(result.median_ms, 3)
    ratio = timed.ratios[1]  # hand-designed latency / found latency = the found model's speed-up
    engine = f"latency engine (carve.latency.compare, {zoo['runtime']}, {cfg.zoo.protocol} protocol, interleaved)"
    write_json(out / "histories.json", histories)
    plots.curves_chart(histories, out / "curves.png")
    winner = "found" if models["found"]["top1"] >= models["hand_designed"]["top1"] else "hand_designed"
    return dict(models=models, winner=winner, speedup_found_vs_hand=round(ratio, 3), latency_engine=engine,
                budget_ms=zoo["budget_ms"], chart=rel(state, out / "curves.png"), histories=rel(state, out / "histories.json"))
