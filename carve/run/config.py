"""RunConfig: the settings of one ``carve run``, loaded from the embedded defaults plus a YAML file."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from carve.compress import CompressConfig
from carve.config import Config, ConfigError, build, read_mapping, setting
from carve.finetune import DetectConfig
from carve.latency import PROTOCOLS
from carve.latency.runtime import RUNTIMES
from carve.search import SearchConfig
from carve.train import TrainConfig

DEFAULT_YAML = Path(__file__).with_name("default.yaml")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DataSection(Config):
    classify: str = setting(help="classification data: a shard set (held-out split by key) or an image folder")
    detect: str = setting(help="detection data: VOC, COCO or YOLO")


@dataclass
class ZooSection(Config):
    """The run's own first step: which zoo models to time, how, and the latency budget."""

    models: str = setting("*", help="glob over zoo model names (several: comma-separated)")
    reference: str = setting("mobilenet_v3_large_100", help="its measured latency is the budget unless budget_ms")
    budget_ms: float | None = setting(None, "positive", help="latency budget (default: the reference's latency)")
    input_size: int = setting(224, "positive", help="input size every latency is measured at")
    runtime: str = setting("eager", choices=RUNTIMES, help="runtime every latency is measured in")
    threads: int | None = setting(None, "positive", help="latency threads (default: physical cores)")
    protocol: str = setting("full", choices=tuple(PROTOCOLS), help="the latency engine's timing protocol")


@dataclass
class SearchSection(SearchConfig):
    """``SearchConfig`` plus the run's budget rule: the search's budget is the zoo's times ``budget_factor``."""

    budget_factor: float = setting(1.0, "positive", help="search latency budget = zoo budget x this")


@dataclass
class FinetuneSection(DetectConfig):
    """``DetectConfig`` plus how many seeds each backbone's detector is finetuned with."""

    seeds: int = setting(3, "positive", help="detection finetunes per backbone (seeds seed, seed+1, ...): the "
                                             "report gives their mean and spread")

    def detect_config(self) -> DetectConfig:
        """The stage's own config: these settings without ``seeds``."""
        return DetectConfig(**{f.name: getattr(self, f.name) for f in fields(DetectConfig)})


@dataclass
class ReportSection(Config):
    title: str = setting("carve run", help="the report's title")


# fields of the stage configs that the run sets itself (from the data section, the zoo step and earlier steps)
RUN_SETS = {
    "search": ("out_dir", "storage", "latency_budget_ms", "resume", "seed", "progress"),
    "search.objective": ("data", "num_classes", "runtime", "threads", "latency_size", "seed", "inherit_from"),
    "train": ("model", "data", "out_dir", "resume", "seed", "pretrained"),
    "finetune": ("backbone", "pretrained", "data", "out_dir", "resume", "seed"),
    "compress": ("model", "calib", "eval", "out_dir", "img_size", "eval_per_class", "threads", "input_size",
                 "runtime"),
}


@dataclass
class RunConfig(Config):
    """One ``carve run``: the data, the zoo step's settings and each stage's own config."""

    name: str = setting(help="run folder name under runs/")
    data: DataSection = setting(help="dataset paths")
    pretrained: str = setting("carve:tiny-imagenet", help="the shipped weights every model of the run starts from")
    seed: int = setting(0, help="seed of every step")
    threads: int | None = setting(None, "positive", help="torch threads for the whole run (default: torch's)")
    jobs: int | None = setting(None, "positive", help="detection finetunes run side by side, each in its own "
                                                      "process on one thread (default: one per core); the "
                                                      "figures do not depend on it")
    zoo: ZooSection = setting(default_factory=ZooSection)
    search: SearchSection = setting(default_factory=SearchSection)
    train: TrainConfig = setting(default_factory=TrainConfig)
    finetune: FinetuneSection = setting(default_factory=FinetuneSection)
    compress: CompressConfig = setting(default_factory=CompressConfig)
    report: ReportSection = setting(default_factory=ReportSection)
    tiny: dict = field(default_factory=dict, repr=False)

    def check(self) -> None:
        if not self.name or "/" in self.name:
            raise self.error("name", f"expected a plain folder name, got {self.name!r}")
        for where, names in RUN_SETS.items():
            section = self
            for part in where.split("."):
                section = getattr(section, part)
            defaults = type(section)()
            for name in names:
                if getattr(section, name) != getattr(defaults, name):
                    raise self.error(f"{where}.{name}", "set by the run itself (from data:, zoo: and the earlier "
                                                        "steps); leave it out of the config")

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
