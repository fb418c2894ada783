"""``carve compress CKPT|NAME --fold-bn --prune 0.3 --quantize int8 --runtime torch --export onnx ...``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="fold, prune, factorise, quantize and export a model, with a report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="carve weights/checkpoint file, spec file or zoo name")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into convs, drop dropout/drop-path")
    p.add_argument("--prune", type=float, default=None, metavar="RATIO",
                   help="fraction of channels to remove per group, in [0, 1)")
    p.add_argument("--prune-macs", type=float, default=None, metavar="FRACTION",
                   help="prune to this fraction of the original MACs instead of a ratio")
    p.add_argument("--importance", default="l2", choices=["l1", "l2", "bn", "taylor"])
    p.add_argument("--prune-iterations", type=int, default=1, help="prune-and-finetune rounds")
    p.add_argument("--finetune-epochs", type=int, default=0, help="KD finetune epochs after each pruning round")
    p.add_argument("--lowrank", type=float, default=None, metavar="ENERGY",
                   help="factorise pointwise convs/linears keeping this fraction of SVD energy")
    p.add_argument("--quantize", default=None, choices=["int8", "fp16", "bf16"])
    p.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime"],
                   help="INT8 flow (torch: torchao PT2E + inductor; onnxruntime: static QDQ) and latency engine")
    p.add_argument("--export", default=[], action="append", choices=["onnx", "program", "aoti"],
                   help="artefacts to write after the last step (repeatable)")
    p.add_argument("--calibration", default="percentile", choices=["minmax", "percentile", "entropy"],
                   help="ONNX Runtime INT8: how activation ranges are set from the calibration images")
    p.add_argument("--keep-if-faster", type=float, default=None, metavar="X",
                   help="keep the quantized model only if it is at least X times faster than the row before "
                        "(it is measured and reported either way)")
    p.add_argument("--calib", default=None, help="image folder for calibration (train/ split); default: --eval")
    p.add_argument("--calib-per-class", type=int, default=20)
    p.add_argument("--eval", default="../shared/data/cifar10", help="image folder for top-1 (val/ or test/)")
    p.add_argument("--eval-per-class", type=int, default=0, help="first N test images per class (0: all)")
    p.add_argument("--img-size", type=int, default=32, help="image size of the data")
    p.add_argument("--input-size", type=int, default=None, help="latency input size (default: --img-size)")
    p.add_argument("--num-classes", type=int, default=None, help="for zoo names: classifier width")
    p.add_argument("--small-input", type=int, default=0, help="for zoo names: early strides removed")
    p.add_argument("--threads", type=int, default=None, help="latency threads (default: physical cores)")
    p.add_argument("--no-latency", action="store_true", help="skip latency measurements")
    p.add_argument("--out-dir", default="runs/compress")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_compress)


def steps_from_args(args: argparse.Namespace) -> list:
    """The pipeline steps the flags ask for, in the order fold, prune, lowrank, quantize, export."""
    steps: list = []
    if args.prune is not None and args.prune_macs is not None:
        raise ValueError("--prune and --prune-macs: give one pruning target, not both")
    if args.prune is not None or args.prune_macs is not None:
        kw = dict(importance=args.importance, iterations=args.prune_iterations, finetune_epochs=args.finetune_epochs)
        kw.update(ratio=args.prune) if args.prune is not None else kw.update(target_macs=args.prune_macs)
        steps.append(("prune", kw))
    if args.fold_bn:
        steps.append("fold")
    if args.lowrank is not None:
        steps.append(("lowrank", dict(energy=args.lowrank)))
    if args.quantize:
        q = dict(precision=args.quantize)
        if args.quantize == "int8" and args.runtime == "onnxruntime":
            q["calibration"] = args.calibration
        if args.keep_if_faster is not None:
            q["min_speedup"] = args.keep_if_faster
        steps.append(("quantize", q))
    if args.export:
        steps.append(("export", dict(formats=tuple(args.export))))
    if not steps:
        raise ValueError("no step asked for: give at least one of --fold-bn, --prune, --prune-macs, --lowrank, "
                         "--quantize, --export")
    return steps


def cmd_compress(args: argparse.Namespace) -> int:
    from carve.compress import pipeline

    report = pipeline(args.model, steps_from_args(args), calib=args.calib, eval=args.eval, out_dir=args.out_dir,
                      runtime=args.runtime, img_size=args.img_size, input_size=args.input_size,
                      calib_per_class=args.calib_per_class, eval_per_class=args.eval_per_class,
                      num_classes=args.num_classes, small_input=args.small_input, threads=args.threads,
                      latency=not args.no_latency)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.markdown())
        print("written: " + ", ".join(report.files.values()))
    return 0
