"""``carve finetune detect|eval|classify``: detection and classification transfer."""

from __future__ import annotations

import argparse
import json

from .flags import config_flags, flag


def register(sub: argparse._SubParsersAction) -> None:
    from carve.finetune.config import ClassifyConfig, DetectConfig
    from carve.finetune.sources import FORMATS

    ft = sub.add_parser("finetune", help="detection and classification transfer of a zoo backbone")
    fsub = ft.add_subparsers(dest="finetune_command", required=True, metavar="ACTION")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    d = fsub.add_parser("detect", help="train a detector (SSDLite, Faster R-CNN, ...) with a zoo backbone",
                        formatter_class=fmt)
    config_flags(d, DetectConfig, required=("backbone",),
                 flags={"data_format": flag("--format"), "out_dir": flag("--out")})
    d.add_argument("--json", action="store_true", help="print the metrics as JSON")
    d.set_defaults(func=cmd_detect)

    e = fsub.add_parser("eval", help="COCO mAP of a detection checkpoint", formatter_class=fmt)
    e.add_argument("checkpoint", help="last.pt / best.pt of a carve finetune detect run")
    e.add_argument("--data", default=None, help="dataset (default: the run's data)")
    e.add_argument("--format", default="auto", choices=FORMATS)
    e.add_argument("--subset", default="val", choices=["val", "all"], help="the run's validation split or all images")
    e.add_argument("--out", default=None, help="output folder (default: CHECKPOINT_DIR/eval)")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--examples", type=int, default=6, help="images in examples.png (0 = none)")
    e.add_argument("--per-class", type=int, default=5, help="show the N best and worst classes")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    c = fsub.add_parser("classify", help="new classifier head on an image folder, optional freezing",
                        formatter_class=fmt)
    config_flags(c, ClassifyConfig, required=("model", "data"),
                 flags={"model": flag("--backbone"), "out_dir": flag("--out")})
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_classify)


def cmd_detect(args: argparse.Namespace) -> int:
    from carve.finetune import detect
    from carve.finetune.evaluate import format_metrics

    cfg = args.config_flags.build(args)
    res = detect(cfg)
    if args.json:
        print(json.dumps(dict(res.metrics, out_dir=str(res.out_dir), checkpoint=str(res.checkpoint),
                              skipped_images=res.skipped_images, trainable_params=res.trainable_params,
                              total_params=res.total_params,
                              peft_weights=str(res.peft_weights) if res.peft_weights else None), indent=2))
        return 0
    print(f"{cfg.backbone} + {cfg.head}: {res.num_train} train / {res.num_val} val images, "
          f"{len(res.history)} epochs, {res.wall_s:.0f} s ({res.images_per_s:.2f} img/s training)")
    print(f"data: {res.data_stats}")
    print(f"trained {res.trainable_params:,} of {res.total_params:,} parameters "
          f"({100 * res.trainable_params / max(res.total_params, 1):.2f}%)"
          + (f", {res.peft.settings.to_text()}; trainable weights {res.peft_weights}" if res.peft else ""))
    if res.skipped_images:
        print(f"skipped {res.skipped_images} image(s) that could not be decoded (named in the log)")
    print(format_metrics(res.metrics, per_class=5))
    print(f"checkpoint {res.checkpoint}; detections {res.results_json}; examples {res.examples_png}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from carve.finetune import evaluate_checkpoint
    from carve.finetune.evaluate import format_metrics

    out = evaluate_checkpoint(args.checkpoint, args.data, args.format, args.subset, args.out, args.batch_size,
                              args.examples, progress=not args.json)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    skipped = f", {out['skipped_images']} skipped: could not be decoded" if out["skipped_images"] else ""
    print(f"{args.checkpoint}: {out['images']} images ({args.subset}{skipped})")
    print(format_metrics(out, per_class=args.per_class))
    for name, path in out["files"].items():
        print(f"{name}: {path}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from carve.finetune import classify

    cfg = args.config_flags.build(args)
    res = classify(cfg)
    summary = dict(top1=res.top1, top5=res.top5, frozen_params=res.frozen_params,
                   trainable_params=res.trainable_params, trainable_fraction=round(res.trainable_fraction, 6),
                   weights=str(res.weights), peft=res.peft.settings.to_text() if res.peft else None,
                   peft_weights=str(res.peft_weights) if res.peft_weights else None, wall_s=round(res.wall_s, 1))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{cfg.model} on {cfg.data}: top-1 {res.top1:.2f}%  top-5 {res.top5:.2f}%  "
              f"({res.frozen_params:,} frozen / {res.trainable_params:,} trainable params = "
              f"{100 * res.trainable_fraction:.2f}% trained, {res.wall_s:.0f} s)")
        if res.peft is not None:
            print(f"peft: {res.peft.summary()}; trainable weights {res.peft_weights}")
        print(f"weights: {res.weights}")
    return 0
