"""RunConfig: the settings of one ``carve run``, loaded from the embedded defaults plus a YAML file."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from carve.compress.quantization import RUNTIMES as COMPRESS_RUNTIMES
from carve.config import Config, ConfigError, build, read_mapping, setting
from carve.latency.runtime import RUNTIMES
from carve.train.config import AUG_PRESETS

from .latency import PROTOCOLS

DEFAULT_YAML = Path(__file__).with_name("default.yaml")
REPO_ROOT = Path(__file__).resolve().parents[2]
COMPRESS_STEPS = ("fold", "prune", "quantize")


@dataclass
class DataSection(Config):
    cifar10: str
    coco128: str


@dataclass
class ZooSection(Config):
    models: str
    reference: str
    budget_ms: float | None = setting(rule="positive")
    input_size: int = setting(rule="positive")
    runtime: str = setting(choices=RUNTIMES)
    threads: int | None = setting(rule="positive")
    protocol: str = setting(choices=PROTOCOLS)


@dataclass
class SearchSection(Config):
    space: str
    trials: int = setting(rule="positive")
    epochs: int = setting(rule="positive")
    train_per_class: int | None = setting(rule="positive")
    val_per_class: int | None = setting(rule="positive")
    img_size: int = setting(rule="positive")
    small_input: int
    batch_size: int = setting(rule="positive")
    lr: float
    budget_factor: float = setting(rule="positive")
    study: str
    bn_recalibration: int = setting(20, ">= 0")


@dataclass
class TrainSection(Config):
    epochs: int = setting(rule="positive")
    train_per_class: int | None = setting(rule="positive")
    val_per_class: int | None = setting(rule="positive")
    img_size: int = setting(rule="positive")
    small_input: int
    batch_size: int = setting(rule="positive")
    lr: float = setting(rule="positive")
    weight_decay: float
    aug: str = setting(choices=AUG_PRESETS)
    workers: int
    warmup_epochs: float = setting(0.3, ">= 0")
    cutmix: float = setting(0.0, ">= 0")
    bn_recalibration: int = setting(20, ">= 0")


@dataclass
class FinetuneSection(Config):
    epochs: int = setting(rule="positive")
    img_size: int = setting(rule="positive")
    batch_size: int = setting(rule="positive")
    lr: float = setting(rule="positive")
    max_steps: int | None = setting(rule="positive")


@dataclass
class CompressSection(Config):
    steps: list[str] = setting(choices=COMPRESS_STEPS)
    prune_ratio: float | None = setting(rule="in [0, 1)")
    finetune_epochs: int = setting(rule=">= 0")
    calib_images: int = setting(rule="positive")
    runtime: str = setting(choices=COMPRESS_RUNTIMES)
    onnx: bool
    prune_macs: float | None = setting(None, "in (0, 1]")
    int8_min_speedup: float | None = setting(None, "positive")
    finetune_lr: float = setting(0.02, "positive")

    def check(self) -> None:
        if (self.prune_ratio is None) == (self.prune_macs is None) and "prune" in self.steps:
            raise self.error("prune_macs", "expected exactly one of it and prune_ratio to be set, "
                                           f"got {self.prune_ratio!r} and {self.prune_macs!r}")


@dataclass
class ReportSection(Config):
    title: str


@dataclass
class RunConfig(Config):
    name: str
    seed: int
    threads: int | None = setting(rule="positive")
    data: DataSection
    zoo: ZooSection
    search: SearchSection
    train: TrainSection
    finetune: FinetuneSection
    compress: CompressSection
    report: ReportSection
    tiny: dict = field(default_factory=dict, repr=False)

    def check(self) -> None:
        if not self.name or "/" in self.name:
            raise self.error("name", f"expected a plain folder name, got {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.pop("tiny")
        return data

    def section_hash(self, section: str) -> str:
        """Hash of one section plus the data paths and seed (what a step's result depends on)."""
        data = self.to_dict()
        payload = {"section": data.get(section), "data": data["data"], "seed": data["seed"]}
        if section != "zoo":  # later steps depend on the zoo step's budget and runtime
            payload["zoo"] = data["zoo"]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def data_path(self, key: str) -> Path:
        """A dataset folder, relative to the working directory or else the repository root."""
        raw = Path(getattr(self.data, key))
        for candidate in (raw, REPO_ROOT / raw):
            if candidate.exists():
                return candidate.resolve()
        raise FileNotFoundError(f"data.{key}: dataset folder {raw} not found (looked in {Path.cwd()} and "
                                f"{REPO_ROOT}); set data.{key} in the config to where it lives")


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base`` (nested dicts merged, everything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field of ``cfg`` again (after edits); errors name the field as in the YAML."""
    try:
        cfg.validate()
    except ConfigError as exc:
        raise exc.moved(type(cfg).__name__, "") from None
    return cfg


def load_config(path: str | Path | None = None, tiny: bool = False,
                overrides: dict | None = None) -> RunConfig:
    """The embedded defaults, then their ``tiny`` section (if asked), then the YAML file at
    ``path`` (if any), then ``overrides``; validated with errors naming the field."""
    data = read_mapping(DEFAULT_YAML)
    if tiny:
        data = deep_merge(data, data.get("tiny") or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--config: {path} does not exist")
        data = deep_merge(data, read_mapping(path))
    if overrides:
        data = deep_merge(data, overrides)
    return build(RunConfig, data)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (what the run actually used)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
