"""A supernet search's winner as a model of its own: spec plus weights, finetuned with the supernet as teacher.

The chosen trial's sub-network is extracted from the study's supernet, its BatchNorm statistics
are re-estimated on the search data, and (when asked) it is finetuned briefly with the supernet's
largest sub-network as knowledge-distillation teacher, as Once-for-All finetunes its specialised
networks. The result is an ordinary carve weights file (``create_model(path)`` builds it) and the
spec beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from carve.files import write_json
from carve.train import TrainConfig, calibration_loader, fit, recalibrate_bn
from carve.zoo import ArchSpec, save_weights
from carve.zoo.supernet import extract, load_supernet

from .storage import load_study
from .trials import best_trial_number, trial_spec


@dataclass
class Winner:
    """The exported winner: its trial, spec, files and (after a finetune) held-out top-1."""

    trial: int
    spec: ArchSpec
    spec_path: Path
    weights_path: Path
    top1: float | None = None


def export_winner(study_name: str, storage: str, out_dir: str | Path, trial: int | None = None,
                  finetune: TrainConfig | None = None, data: str | None = None, bn_batches: int = 20,
                  name: str = "winner") -> Winner:
    """Write ``<out_dir>/<name>.json`` and ``<name>.safetensors`` for ``trial`` (default: the most accurate
    feasible Pareto trial) of a supernet study.

    ``data``: the images BatchNorm is re-estimated and the finetune trains on (default: the
    search's). ``finetune``: the recipe of the brief finetune (its ``model``, ``data``, ``img_size``
    (the search's), ``out_dir`` and ``teacher`` are set here); ``None`` writes the supernet's weights
    as they are.
    """
    study = load_study(study_name, storage)
    attrs: dict[str, Any] = study.user_attrs.get("carve", {})
    if not attrs.get("supernet"):
        raise ValueError(f"study {study_name!r}: not a search over a supernet's sub-networks, so it has no weights "
                         f"to export; write its spec with export_spec (carve search export)")
    objective = attrs.get("objective", {})
    number = best_trial_number(study) if trial is None else trial
    spec, _ = trial_spec(study, number)
    supernet = load_supernet(attrs["supernet"])
    spec = supernet.fit_spec(spec).replace(name=name)
    model = extract(supernet, spec)
    data, img_size = data or objective.get("data"), int(objective.get("img_size", 64))
    if bn_batches and data:
        recalibrate_bn(model, calibration_loader(data, img_size, 64, bn_batches, seed=int(objective.get("seed", 0))))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    top1 = None
    if finetune is not None:
        teacher = extract(supernet, supernet.largest()).eval()
        cfg = replace(finetune, model=name, data=data, img_size=img_size, out_dir=str(out / f"{name}-finetune"),
                      teacher=teacher)
        result = fit(cfg, model=model)
        model, top1 = result.model, float(result.final_top1)
    spec_path = write_json(out / f"{name}.json", spec.to_dict())
    metrics = dict(study=study_name, trial=number, supernet=str(attrs["supernet"]))
    if top1 is not None:
        metrics["top1"] = round(top1, 2)
    weights = save_weights(model.eval(), out / f"{name}.safetensors", metrics=metrics, spec=spec)
    return Winner(number, spec, Path(spec_path), weights, top1)
