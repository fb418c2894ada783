"""``CompressConfig``: one compression run (the steps asked for, the data, the latency settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carve.config import Config, ConfigError, build, setting
from carve.latency.protocol import PROTOCOLS
from carve.train.config import TrainConfig

from .clustering import CLUSTER_BITS
from .pruning import CRITERIA
from .quantization import CALIBRATIONS, PRECISIONS, RUNTIMES
from .sensitivity import TABLE_RUNTIMES
from .stepwise import EXPORT_FORMATS

# TrainConfig fields the KD finetuning after pruning sets itself
FINETUNE_OWN = ("model", "data", "out_dir", "epochs", "teacher", "img_size", "overwrite")


@dataclass
class CompressConfig(Config):
    """Which steps to apply to ``model`` (``plan`` orders them: prune, fold, lowrank, cluster, quantize,
    export), on which data, and how latency is measured. ``finetune``: extra ``TrainConfig`` fields
    of the KD finetuning after pruning (e.g. lr, batch_size, train_per_class, bn_recalibration)."""

    model: str | None = setting(None, help="carve weights/checkpoint file, spec file or zoo name")
    fold_bn: bool = setting(False, help="fold BatchNorm into convs, drop dropout/drop-path")
    prune: float | None = setting(None, "in [0, 1)", help="fraction of channels to remove per group")
    prune_macs: float | None = setting(None, "in (0, 1]", help="prune to this fraction of the original MACs "
                                                               "instead of a ratio")
    importance: str = setting("l2", choices=CRITERIA, help="channel importance criterion")
    prune_iterations: int = setting(1, ">= 1", help="prune-and-finetune rounds")
    finetune_epochs: int = setting(0, ">= 0", help="KD finetune epochs after each pruning round")
    lowrank: float | None = setting(None, "in (0, 1]", help="factorise pointwise convs/linears keeping this "
                                                            "fraction of SVD energy")
    cluster_bits: int | None = setting(None, choices=CLUSTER_BITS, help="cluster each convolution/linear weight to "
                                                                        "2^N values (k-means palettes; BN folded "
                                                                        "first); the size is indices + palettes, the "
                                                                        "model still computes in float")
    cluster_group_size: int = setting(0, ">= 0", help="with cluster_bits: one palette per this many output "
                                                      "channels (0: one per tensor)")
    quantize: str | None = setting(None, choices=PRECISIONS, help="precision to quantize to")
    runtime: str = setting("torch", choices=RUNTIMES, help="INT8 flow (torch: torchao PT2E + inductor; "
                                                           "onnxruntime: static QDQ; openvino: NNCF) and the "
                                                           "runtime every row is timed in")
    export: list[str] = setting(default_factory=list, choices=EXPORT_FORMATS,
                                help="artefacts to write after the last step")
    keep_float: list[str] = setting(default_factory=list, help="INT8: glob patterns over module names kept in FP32 "
                                                               "(e.g. '*.se' for the SE gates, 'classifier')")
    max_drop: float | None = setting(None, ">= 0", help="held-out top-1 points the compressed model may lose against "
                                                        "the original: a step that loses more is reported and "
                                                        "dropped; INT8 returns blocks to FP32, most sensitive "
                                                        "first, until within what is left of it")
    qat_epochs: int = setting(0, ">= 0", help="INT8 (runtime torch): quantization-aware training epochs on the "
                                              "training split, distilled from the FP32 model")
    qat_lr: float = setting(1e-4, "positive", help="learning rate of the quantization-aware training")
    qat_freeze_bn: bool = setting(True, help="quantization-aware training keeps the model's BatchNorm running "
                                             "statistics instead of re-estimating them from its batches")
    sensitivity: bool = setting(False, help="write sensitivity.json/.md/.png: top-1 lost per block when only it is "
                                            "INT8 or pruned (measured on the model the quantize step gets)")
    sensitivity_prune: list[float] = setting(default_factory=lambda: [0.25, 0.5], rule="in [0, 1)",
                                             help="pruning ratios of the sensitivity table (empty: INT8 only)")
    sensitivity_runtime: str = setting("onnxruntime", choices=TABLE_RUNTIMES,
                                       help="INT8 flow the sensitivity table, and so accuracy control's order, is "
                                            "measured in (onnxruntime: re-quantizations of one export; torch: "
                                            "PT2E, one block at a time, about twice as long)")
    calibration: str = setting("percentile", choices=CALIBRATIONS, help="ONNX Runtime INT8: how activation "
                                                                        "ranges are set from the calibration images")
    keep_if_faster: float | None = setting(None, "positive", help="keep each step (prune, fold, lowrank, quantize) "
                                                                  "only if it makes the model at least this many "
                                                                  "times faster than the row before (it is measured "
                                                                  "and reported either way)")
    calib: str | None = setting(None, help="image folder for calibration (train/ split); default: eval")
    calib_per_class: int = setting(20, ">= 0", help="calibration images per class (0: all)")
    eval: str | None = setting("../shared/data/cifar10", help="image folder for top-1 (val/ or test/)")
    eval_per_class: int = setting(0, ">= 0", help="first N test images per class (0: all)")
    img_size: int = setting(32, ">= 8", help="image size of the data")
    input_size: int | None = setting(None, ">= 8", help="latency input size (default: img_size)")
    num_classes: int | None = setting(None, ">= 1", help="for zoo names: classifier width")
    small_input: int = setting(0, ">= 0", help="for zoo names: early strides removed")
    threads: int | None = setting(None, ">= 1", help="latency threads (default: physical cores)")
    latency: bool = setting(True, help="measure latency")
    protocol: str = setting("full", choices=tuple(PROTOCOLS), help="the latency engine's protocol every gate and "
                                                                   "the final table time with")
    out_dir: str = setting("runs/compress", help="output folder")
    finetune: dict[str, Any] = setting(default_factory=dict, help="extra TrainConfig fields of the KD finetuning "
                                                                  "after pruning")

    def check(self) -> None:
        if self.prune is not None and self.prune_macs is not None:
            raise self.error("prune_macs", "give one pruning target (prune or prune_macs), not both")
        if self.keep_if_faster is not None and not self.latency:
            raise self.error("keep_if_faster", "keeping a step only where it pays needs latency measurements")
        where = f"{type(self).__name__}.finetune"
        for name in self.finetune:
            if name in FINETUNE_OWN:
                raise ConfigError(f"{where}.{name}", "set by the compress step itself, not by finetune")
        build(TrainConfig, self.finetune, where)
        needs_int8 = [n for n in ("keep_float", "qat_epochs") if getattr(self, n) not in (None, [], 0)]
        if needs_int8 and self.quantize != "int8":
            raise self.error(needs_int8[0], "applies to INT8 only: add quantize='int8' (--quantize int8)")
        for i, p in enumerate(self.keep_float):
            if not p.strip():
                raise self.error(f"keep_float[{i}]", "expected a glob pattern over module names, got an empty one")
        if self.cluster_group_size and self.cluster_bits is None:
            raise self.error("cluster_group_size", "applies with cluster_bits only")
        if self.cluster_bits is not None and self.quantize == "int8":
            raise self.error("cluster_bits", "INT8 quantization would replace the palettes: give cluster_bits or "
                                             "quantize='int8', not both")
        if self.qat_epochs and self.runtime != "torch":
            raise self.error("qat_epochs", "quantization-aware training runs in the PT2E flow: use runtime='torch'")
        if self.max_drop is not None and self.eval is None:
            raise self.error("max_drop", "an accuracy budget needs held-out data (eval)")

    def plan(self) -> list[str | tuple[str, dict[str, Any]]]:
        """The ``pipeline`` steps asked for, in the order prune, fold, lowrank, cluster, quantize, export.
        Clustering saves size, not time: ``keep_if_faster`` does not apply to it."""
        steps: list[str | tuple[str, dict[str, Any]]] = []
        pays = {} if self.keep_if_faster is None else {"min_speedup": self.keep_if_faster}
        if self.prune is not None or self.prune_macs is not None:
            target = {"ratio": self.prune} if self.prune is not None else {"target_macs": self.prune_macs}
            steps.append(("prune", dict(importance=self.importance, iterations=self.prune_iterations,
                                        finetune_epochs=self.finetune_epochs, **target, **pays)))
        if self.fold_bn:
            steps.append(("fold", pays))
        if self.lowrank is not None:
            steps.append(("lowrank", dict(energy=self.lowrank, **pays)))
        if self.cluster_bits is not None:
            steps.append(("cluster", dict(bits=self.cluster_bits, group_size=self.cluster_group_size)))
        if self.quantize:
            q: dict[str, Any] = dict(precision=self.quantize)
            if self.quantize == "int8" and self.runtime == "onnxruntime":
                q["calibration"] = self.calibration
            if self.keep_float:
                q["keep_float"] = list(self.keep_float)
            if self.qat_epochs:
                q.update(qat_epochs=self.qat_epochs, qat_lr=self.qat_lr, qat_freeze_bn=self.qat_freeze_bn)
            if self.quantize == "int8" and self.sensitivity_runtime != "onnxruntime":
                q["table_runtime"] = self.sensitivity_runtime
            steps.append(("quantize", {**q, **pays}))
        if self.export:
            steps.append(("export", dict(formats=tuple(self.export))))
        if not steps and not self.sensitivity:
            raise ConfigError("", "no step asked for: give at least one of fold_bn, prune, prune_macs, lowrank, "
                                  "cluster_bits, quantize, export, sensitivity")
        return steps
