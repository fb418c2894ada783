"""What a trial measures: an accuracy estimate, a latency, params and MACs of one candidate.

Accuracy estimators (``ObjectiveConfig.accuracy``): ``proxy`` trains through ``carve.train.fit``
for a fixed budget (a few hundred steps on a CIFAR-10 subset), ``inherited`` scores a channel
sub-network with the weights of a pretrained model (``inherited``), ``supernet`` a sub-network of a
trained supernet with the supernet's weights (``supernet_accuracy``), a zero-cost proxy name
(``synflow``, ``naswot``, ``jacob_cov``, ``grad_norm``, ``snip``) scores the untrained network,
``params``/``macs`` use size as the estimate. Latency is measured by ``carve.latency.measure``
in the chosen runtime (ONNX Runtime by default on CPU) or predicted from a latency table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from carve.config import Config, setting
from carve.latency.runtime import RUNTIMES
from carve.train.shards import is_shards
from carve.zoo import ArchSpec, create_model, profile

from .proxies import BASELINES, PROXIES

ESTIMATORS = ("proxy", "inherited", "supernet") + tuple(PROXIES) + BASELINES
LATENCY_MODES = ("measure", "predict", "none")


@dataclass
class ObjectiveConfig(Config):
    """How candidates are scored: the accuracy estimator, its proxy training and the latency measurement."""

    accuracy: str = setting("proxy", choices=ESTIMATORS, help="accuracy estimator: proxy (training), inherited "
                                                              "(weights of inherit_from), a zero-cost proxy, or "
                                                              "params/macs")
    inherit_from: str | None = setting(None, help="accuracy=inherited: NAME@TAG (a zoo model with pretrained "
                                                  "weights) or a carve weights file the candidates inherit from")
    supernet: str | None = setting(None, help="accuracy=supernet: the supernet weights file or tag "
                                              "(carve:tiny-imagenet) candidates are extracted from")
    data: str = setting("../shared/data/cifar10", help="ImageFolder with train/ and test/")
    num_classes: int = setting(10, ">= 1", help="classifier width of the candidates")
    img_size: int = setting(32, ">= 8", help="proxy-training image size")
    small_input: int = setting(2, ">= 0", help="strides removed for proxy training on small images")
    epochs: int = setting(1, ">= 1", help="proxy-training epochs")
    max_steps: int = setting(0, ">= 0", help="cap proxy-training steps (0: no cap)")
    batch_size: int = setting(64, ">= 1", help="proxy-training batch size")
    lr: float = setting(0.4, "positive", help="for 256 images per step (scaled to batch_size)")
    train_per_class: int = setting(200, ">= 0", help="proxy-training images per class (0: all)")
    val_per_class: int = setting(50, ">= 0", help="proxy-validation images per class (0: all)")
    proxy_batch: int = setting(16, ">= 1", help="images scored by a zero-cost proxy")
    bn_recalibration: int = setting(20, ">= 0", help="batches over which proxy training re-estimates BatchNorm "
                                                     "statistics before evaluating (0: off)")
    latency: str = setting("measure", choices=LATENCY_MODES, help="measure, predict (latency table) or none")
    runtime: str = setting("onnxruntime", choices=RUNTIMES, help="runtime latency is measured in")
    device: str = setting("cpu", help="device proxy training runs and latency is measured on")
    latency_device: str | None = setting(None, help="where latency is measured when not on device: a carve "
                                                    "agent's http://HOST:PORT (token in $CARVE_AGENT_TOKEN)")
    threads: int | None = setting(None, ">= 1", help="CPU threads for timing (default: physical cores)")
    latency_table: str | None = setting(None, help="latency table file for latency=predict")
    latency_size: int | None = setting(None, ">= 1", help="timing resolution (default: the sampled one)")
    latency_cache: str | None = setting(None, help="latency cache file (default: carve's cache; off: none)")
    quick_latency: bool = setting(False, help="the latency engine's short timing protocol")
    latency_protocol: dict[str, Any] | None = setting(None, help="fields of carve.latency.Protocol to override")
    seed: int = setting(0, help="random seed")
    train_kwargs: dict[str, Any] = setting(default_factory=dict, help="extra TrainConfig fields of proxy training")

    def check(self) -> None:
        if self.accuracy == "supernet" and not self.supernet:
            raise self.error("supernet", "accuracy='supernet' needs the supernet (a weights file or a tag)")
        if self.latency == "predict" and not self.latency_table:
            raise self.error("latency_table", "latency='predict' needs a latency table file")


Report = Callable[[int, float], None]


def check_inputs(cfg: ObjectiveConfig) -> None:
    """The files every trial would read, checked once before the first trial; an error names the
    field (``objective.data``, ``objective.latency_cache``, ``objective.latency_table``) and the file."""
    if cfg.accuracy == "supernet":
        from carve.zoo.supernet import supernet_space

        try:
            supernet_space(cfg.supernet)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ValueError(f"objective.supernet: {exc}") from None
    if cfg.accuracy == "proxy" or (cfg.accuracy == "supernet" and not is_shards(cfg.data)):
        data = Path(cfg.data)
        for splits in (("train",), ("val", "test")):
            if not any((data / split).is_dir() for split in splits):
                what = "proxy training" if cfg.accuracy == "proxy" else "scoring with a supernet"
                raise FileNotFoundError(f"objective.data: {data} has no {' or '.join(s + '/' for s in splits)} "
                                        f"folder ({what} needs an image folder with train/ and val/ or test/)")
    if cfg.latency == "predict":
        from carve.latency.table import LatencyTable

        try:
            LatencyTable.load(cfg.latency_table)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"objective.latency_table: {exc}") from None
    elif cfg.latency == "measure" and cfg.latency_cache != "off":
        import sqlite3

        from carve.latency.measurement import open_cache

        try:
            len(open_cache(cfg.latency_cache or True))
        except (sqlite3.Error, OSError) as exc:
            where = cfg.latency_cache or "carve's default latency cache"
            raise ValueError(f"objective.latency_cache: {where}: not a readable latency cache ({exc}); delete it, "
                             f"or set latency_cache to another file or off") from None


def measure_latency(spec: ArchSpec, resolution: int, cfg: ObjectiveConfig, remeasure: bool = False) -> float:
    """Median latency in ms of ``spec`` at ``resolution`` under ``cfg``'s device and runtime."""
    size = cfg.latency_size or resolution
    if cfg.latency == "none":
        return float("nan")
    if cfg.latency == "predict":
        from carve.latency.table import LatencyTable, predict

        return float(predict(spec, LatencyTable.load(cfg.latency_table), size))
    from carve.latency import QUICK, measure

    cache: bool | str = False if cfg.latency_cache == "off" else (cfg.latency_cache or True)
    protocol = QUICK if cfg.quick_latency else None
    if cfg.latency_protocol:
        from dataclasses import replace

        from carve.latency import Protocol

        protocol = replace(protocol or Protocol(), **cfg.latency_protocol)
    result = measure(spec, device=cfg.latency_device or cfg.device, batch=1, input_size=size, threads=cfg.threads,
                     runtime=cfg.runtime, cache=cache, remeasure=remeasure, protocol=protocol)
    return float(result.median_ms)


def _batch(cfg: ObjectiveConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch for zero-cost proxies: real images when the data folder exists, else noise."""
    g = torch.Generator().manual_seed(cfg.seed)
    root = Path(cfg.data) / "train"
    if root.is_dir():
        from torchvision import datasets, transforms

        tf = transforms.Compose([transforms.Resize(cfg.img_size), transforms.CenterCrop(cfg.img_size),
                                 transforms.ToTensor(),
                                 transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        ds = datasets.ImageFolder(str(root), tf)
        idx = torch.randperm(len(ds), generator=g)[: cfg.proxy_batch].tolist()
        images, labels = zip(*(ds[i] for i in idx))
        return torch.stack(images), torch.tensor(labels)
    images = torch.randn(cfg.proxy_batch, 3, cfg.img_size, cfg.img_size, generator=g)
    labels = torch.randint(0, cfg.num_classes, (cfg.proxy_batch,), generator=g)
    return images, labels


class Objective:
    """Scores candidates; ``evaluate`` returns accuracy, latency_ms, params, macs (and extras)."""

    def __init__(self, cfg: ObjectiveConfig, work_dir: str | Path = "runs/search"):
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._inherited: Any = None

    def evaluate(self, spec: ArchSpec, resolution: int, name: str = "trial",
                 report: Report | None = None) -> dict[str, float]:
        out = self.cost(spec, resolution)
        out["accuracy"] = self.accuracy(spec, name, report)
        if not math.isfinite(out["accuracy"]):
            raise FloatingPointError(f"accuracy estimate is {out['accuracy']} (diverged)")
        return out

    def cost(self, spec: ArchSpec, resolution: int) -> dict[str, float]:
        """params, MACs (at the timing resolution) and latency_ms; params/MACs come first, cheaply."""
        cfg = self.cfg
        spec = spec.with_num_classes(cfg.num_classes)
        prof = profile(create_model(spec), cfg.latency_size or resolution)
        out: dict[str, float] = {"params": float(prof.params), "macs": float(prof.macs)}
        out["latency_ms"] = measure_latency(spec, resolution, cfg)
        return out

    def accuracy(self, spec: ArchSpec, name: str = "trial", report: Report | None = None) -> float:
        cfg = self.cfg
        spec = spec.with_num_classes(cfg.num_classes)
        if cfg.accuracy == "proxy":
            return self._proxy_train(spec, name, report)
        if cfg.accuracy == "inherited":
            return self.inherited()(spec)
        if cfg.accuracy == "supernet":
            return self.inherited()(spec)
        if self._batch is None:
            self._batch = _batch(cfg)
        images, labels = self._batch
        from .proxies import compute_proxies

        small = spec if not cfg.small_input else _small(spec, cfg.small_input)
        torch.manual_seed(cfg.seed)
        return float(compute_proxies(small, images, labels, [cfg.accuracy], seed=cfg.seed)[cfg.accuracy])

    def inherited(self) -> Any:
        """The ``inherited`` (or ``supernet``) estimator, built once: it loads the source model and the data."""
        if self._inherited is None:
            if self.cfg.accuracy == "supernet":
                from .supernet_accuracy import estimator as from_supernet

                self._inherited = from_supernet(self.cfg)
                return self._inherited
            from .inherited import estimator

            if not self.cfg.inherit_from:
                raise ValueError("objective.inherit_from: accuracy='inherited' needs the model candidates inherit "
                                 "from (NAME@TAG or a weights file)")

            self._inherited = estimator(self.cfg)
        return self._inherited

    def _proxy_train(self, spec: ArchSpec, name: str, report: Report | None) -> float:
        cfg = self.cfg
        data = Path(cfg.data)
        if not (data / "train").is_dir():
            raise FileNotFoundError(f"objective.data: no train/ folder under {data} (CIFAR-10 as ImageFolder expected)")
        from carve.train import TrainConfig, fit

        tc = TrainConfig(model=spec, data=str(data), out_dir=str(self.work_dir / "trials" / name), epochs=cfg.epochs,
                         batch_size=cfg.batch_size, lr=cfg.lr, img_size=cfg.img_size, small_input=cfg.small_input,
                         train_per_class=cfg.train_per_class, val_per_class=cfg.val_per_class,
                         max_steps=cfg.max_steps, seed=cfg.seed, device=cfg.device,
                         bn_recalibration=cfg.bn_recalibration,
                         **{**dict(workers=0, progress=False, tensorboard=False, cutmix_alpha=0.0, mix_prob=0.0,
                                   warmup_epochs=0.0, overwrite=True), **cfg.train_kwargs})
        def on_epoch(row: dict) -> None:
            if "top1" in row:
                report(int(row["epoch"]), float(row["top1"]))

        return float(fit(tc, on_epoch=None if report is None else on_epoch).final_top1)


def _small(spec: ArchSpec, n: int) -> ArchSpec:
    from carve.zoo import for_small_images

    return for_small_images(spec, n)
