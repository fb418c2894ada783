"""The run's train step: the found and the hand-designed model, from the same footing, with one recipe."""

from __future__ import annotations

import sys
from dataclasses import replace
from torch import nn

from carve.files import write_json

from .config import RunConfig
from .state import RunState, rel


def starting_points(cfg: RunConfig, state: RunState, zoo: dict, search: dict) -> tuple[dict[str, nn.Module], str]:
    """The found and the hand-designed model as training starts, and the footing they share in words:
    both from shipped weights (the found one extracted from the supernet, or inheriting its base's) or
    both from random initialisation."""
    from carve.search.inherited import load_source
    from carve.zoo import create_model, load_spec
    from carve.zoo.subnets import inherit
    from carve.zoo.supernet import extract, load_supernet

    spec = load_spec(state.root / search["best"]["spec"]).replace(name="carve_found")
    classes = search["num_classes"]
    hand = zoo["hand_designed"]
    if not search.get("supernet") and not search.get("inherit_from"):
        found, reference = create_model(spec.with_num_classes(classes)), create_model(hand, num_classes=classes)
        return {"found": found, "hand_designed": reference}, "both start from random initialisation"
    if search.get("supernet"):
        supernet = load_supernet(search["supernet"])
        found = extract(supernet, supernet.fit_spec(spec))
        how = f"is a sub-network of the shipped supernet ({search['supernet']}) with its weights"
    else:
        source = load_source(search["inherit_from"])
        found = inherit(source, spec.with_num_classes(source.spec.head.num_classes))
        how = (f"inherits those of {search['inherit_from'].partition('@')[0]} (it is a channel sub-network "
               f"of it)")
    if found.num_classes != classes:
        found.reset_classifier(classes)
    reference = create_model(hand, pretrained=cfg.pretrained, num_classes=classes)
    footing = f"both start from carve's shipped {cfg.pretrained} weights: the found model {how}, {hand} loads its own"
    return {"found": found, "hand_designed": reference}, footing


def run_train(cfg: RunConfig, state: RunState) -> dict:
    """Train the best found model and the strongest hand-designed model with the same short recipe."""
    from carve.latency import PROTOCOLS, compare
    from carve.train import fit
    from carve.zoo import create_model, profile

    from . import plots

    zoo, search = state.summary("zoo"), state.summary("search")
    out = state.step_dir("train")
    start, footing = starting_points(cfg, state, zoo, search)
    models, histories = {}, {}
    for role, model in start.items():
        spec = model.spec
        tc = replace(cfg.train, model=spec.name, data=str(cfg.data_path("classify")), out_dir=str(out / role),
                     seed=cfg.seed, resume=(out / role / "last.pt").is_file())
        print(f"[carve run] train: {role} ({spec.name})", file=sys.stderr, flush=True)
        res = fit(tc, model=model)
        prof = profile(create_model(spec), zoo["input_size"])
        histories[f"{role}: {spec.name}"] = res.history
        last = res.history[-1] if res.history else {}
        models[role] = dict(name=spec.name, top1=round(float(res.final_top1), 2), top5=last.get("top5"),
                            best_top1=round(float(res.best_top1), 2), params_m=round(prof.params / 1e6, 3),
                            macs_m=round(prof.macs / 1e6, 1), weights=rel(state, out / role / "final.safetensors"),
                            wall_s=round(res.wall_s, 1), images_per_s=round(res.images_per_s, 1),
                            epochs=cfg.train.epochs)
    # both deployable models timed in one process, interleaved, for their ratio
    deploy = {role: create_model(model.spec).eval() for role, model in start.items()}
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
                footing=footing, budget_ms=zoo["budget_ms"], chart=rel(state, out / "curves.png"),
                histories=rel(state, out / "histories.json"))
