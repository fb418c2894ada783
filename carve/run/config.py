"""RunConfig: the settings of one ``carve run``, loaded from the embedded defaults plus a YAML file."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_YAML = Path(__file__).with_name("default.yaml")
REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A bad config value; the message names the field and what was expected."""


@dataclass
class DataSection:
    cifar10: str
    coco128: str


@dataclass
class ZooSection:
    models: str
    reference: str
    budget_ms: float | None
    input_size: int
    runtime: str
    threads: int | None
    protocol: str


@dataclass
class SearchSection:
    space: str
    trials: int
    epochs: int
    train_per_class: int | None
    val_per_class: int | None
    img_size: int
    small_input: int
    batch_size: int
    lr: float
    budget_factor: float
    study: str
    bn_recalibration: int = 20


@dataclass
class TrainSection:
    epochs: int
    train_per_class: int | None
    val_per_class: int | None
    img_size: int
    small_input: int
    batch_size: int
    lr: float
    weight_decay: float
    aug: str
    workers: int
    warmup_epochs: float = 0.3
    cutmix: float = 0.0
    bn_recalibration: int = 20


@dataclass
class FinetuneSection:
    epochs: int
    img_size: int
    batch_size: int
    lr: float
    max_steps: int | None


@dataclass
class CompressSection:
    steps: list[str]
    prune_ratio: float | None
    finetune_epochs: int
    calib_images: int
    runtime: str
    onnx: bool
    prune_macs: float | None = None
    int8_min_speedup: float | None = None
    finetune_lr: float = 0.02


@dataclass
class ReportSection:
    title: str


@dataclass
class RunConfig:
    name: str
    seed: int
    threads: int | None
    data: DataSection
    zoo: ZooSection
    search: SearchSection
    train: TrainSection
    finetune: FinetuneSection
    compress: CompressSection
    report: ReportSection
    tiny: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
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


ZOO_RUNTIMES = ("eager", "compile", "onnxruntime")
COMPRESS_STEPS = ("fold", "prune", "quantize")
AUGS = ("weak", "medium", "strong")


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base`` (nested dicts merged, everything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and (isinstance(value, bool) or not isinstance(value, tp)):
        raise ConfigError(f"{where}: expected {'an integer' if tp is int else 'a number'}, got {value!r}")
    if tp in (str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {'a string' if tp is str else 'true or false'}, got {value!r}")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where + '.' if where else ''}{unknown[0]}: unknown field; known fields: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise ConfigError(f"{path}: missing")
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name], path)
        else:
            kwargs[f.name] = _check_type(data[f.name], tp, path)
    return cls(**kwargs)


def _positive(value: float | None, where: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{where}: expected a positive number, got {value!r}")


def validate(cfg: RunConfig) -> RunConfig:
    """Range checks the types alone cannot express."""
    if cfg.zoo.runtime not in ZOO_RUNTIMES:
        raise ConfigError(f"zoo.runtime: expected one of {', '.join(ZOO_RUNTIMES)}, got {cfg.zoo.runtime!r}")
    _positive(cfg.zoo.budget_ms, "zoo.budget_ms", allow_none=True)
    _positive(cfg.zoo.threads, "zoo.threads", allow_none=True)
    _positive(cfg.threads, "threads", allow_none=True)
    if cfg.zoo.protocol not in ("full", "quick"):
        raise ConfigError(f"zoo.protocol: expected full or quick, got {cfg.zoo.protocol!r}")
    for where, value in [("zoo.input_size", cfg.zoo.input_size),
                         ("search.trials", cfg.search.trials), ("search.budget_factor", cfg.search.budget_factor), ("search.epochs", cfg.search.epochs),
                         ("search.img_size", cfg.search.img_size), ("search.batch_size", cfg.search.batch_size),
                         ("train.epochs", cfg.train.epochs), ("train.img_size", cfg.train.img_size),
                         ("train.batch_size", cfg.train.batch_size), ("train.lr", cfg.train.lr),
                         ("finetune.epochs", cfg.finetune.epochs), ("finetune.img_size", cfg.finetune.img_size),
                         ("finetune.batch_size", cfg.finetune.batch_size), ("finetune.lr", cfg.finetune.lr),
                         ("compress.calib_images", cfg.compress.calib_images)]:
        _positive(value, where)
    for where, value in [("search.train_per_class", cfg.search.train_per_class),
                         ("search.val_per_class", cfg.search.val_per_class),
                         ("train.train_per_class", cfg.train.train_per_class),
                         ("train.val_per_class", cfg.train.val_per_class),
                         ("finetune.max_steps", cfg.finetune.max_steps)]:
        _positive(value, where, allow_none=True)
    for where, value in [("search.bn_recalibration", cfg.search.bn_recalibration),
                         ("train.bn_recalibration", cfg.train.bn_recalibration)]:
        if value < 0:
            raise ConfigError(f"{where}: expected a number of batches >= 0 (0 = off), got {value!r}")
    if cfg.train.aug not in AUGS:
        raise ConfigError(f"train.aug: expected one of {', '.join(AUGS)}, got {cfg.train.aug!r}")
    for i, step in enumerate(cfg.compress.steps):
        if step not in COMPRESS_STEPS:
            raise ConfigError(f"compress.steps[{i}]: expected one of {', '.join(COMPRESS_STEPS)}, got {step!r}")
    if cfg.compress.runtime not in ("onnxruntime", "torch"):
        raise ConfigError(f"compress.runtime: expected onnxruntime or torch, got {cfg.compress.runtime!r}")
    if cfg.compress.finetune_epochs < 0:
        raise ConfigError(f"compress.finetune_epochs: expected 0 or more, got {cfg.compress.finetune_epochs!r}")
    c = cfg.compress
    if not c.finetune_lr > 0:
        raise ConfigError(f"compress.finetune_lr: expected a positive learning rate, got {c.finetune_lr!r}")
    if c.prune_ratio is not None and not 0.0 <= c.prune_ratio < 1.0:
        raise ConfigError(f"compress.prune_ratio: expected a fraction in [0, 1), got {c.prune_ratio!r}")
    if c.int8_min_speedup is not None and not c.int8_min_speedup > 0:
        raise ConfigError(f"compress.int8_min_speedup: expected a positive speed-up factor, got {c.int8_min_speedup!r}")
    if c.prune_macs is not None and not 0.0 < c.prune_macs <= 1.0:
        raise ConfigError(f"compress.prune_macs: expected a fraction of the MACs in (0, 1], got {c.prune_macs!r}")
    if (c.prune_ratio is None) == (c.prune_macs is None) and "prune" in c.steps:
        raise ConfigError("compress.prune_macs: expected exactly one of it and compress.prune_ratio to be set, "
                          f"got {c.prune_ratio!r} and {c.prune_macs!r}")
    for where, value in [("train.warmup_epochs", cfg.train.warmup_epochs), ("train.cutmix", cfg.train.cutmix)]:
        if value < 0:
            raise ConfigError(f"{where}: expected 0 or more, got {value!r}")
    if not cfg.name or "/" in cfg.name:
        raise ConfigError(f"name: expected a plain folder name, got {cfg.name!r}")
    return cfg


def load_config(path: str | Path | None = None, tiny: bool = False,
                overrides: dict | None = None) -> RunConfig:
    """The embedded defaults, then their ``tiny`` section (if asked), then the YAML file at
    ``path`` (if any), then ``overrides``; validated with errors naming the field."""
    data = _read_yaml(DEFAULT_YAML)
    if tiny:
        data = deep_merge(data, data.get("tiny") or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--config: {path} does not exist")
        data = deep_merge(data, _read_yaml(path))
    if overrides:
        data = deep_merge(data, overrides)
    return validate(_build(RunConfig, data, ""))


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (what the run actually used)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
