"""The compress stage's entry point: a ``CompressConfig`` in, a ``CompressReport`` out."""

from __future__ import annotations

from carve.config import ConfigError

from .config import CompressConfig
from .report import CompressReport
from .stepwise import pipeline


def compress(config: CompressConfig) -> CompressReport:
    """Apply the steps ``config`` asks for (``config.plan()``), measuring and reporting each."""
    c = config
    if c.model is None:
        raise ConfigError("model", "missing: the model to compress (a weights file, spec file or zoo name)")
    return pipeline(c.model, c.plan(), calib=c.calib, eval=c.eval, out_dir=c.out_dir, runtime=c.runtime,
                    finetune=dict(c.finetune), img_size=c.img_size, input_size=c.input_size,
                    calib_per_class=c.calib_per_class, eval_per_class=c.eval_per_class, num_classes=c.num_classes,
                    small_input=c.small_input, threads=c.threads, latency=c.latency, max_drop=c.max_drop,
                    protocol=c.protocol,
                    sensitivity=dict(prune_ratios=list(c.sensitivity_prune), runtime=c.sensitivity_runtime)
                    if c.sensitivity else None)
