"""``carve finetune detect|eval|classify``: detection and classification transfer."""

from __future__ import annotations

import argparse
import json


def _pretrained(text: str | None):
    if text is None or text.lower() in ("false", "0", "no"):
        return False
    return True if text.lower() in ("true", "1", "yes") else text


def _freeze(text: str):
    return int(text) if text.isdigit() else text


def register(sub: argparse._SubParsersAction) -> None:
    ft = sub.add_parser("finetune", help="detection and classification transfer of a zoo backbone")
    fsub = ft.add_subparsers(dest="finetune_command", required=True, metavar="ACTION")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    d = fsub.add_parser("detect", help="train a detector (SSDLite, Faster R-CNN, ...) with a zoo backbone",
                        formatter_class=fmt)
    d.add_argument("--backbone", required=True, help="zoo name, spec file (.json/.yaml) or carve weights file")
    d.add_argument("--head", default="ssdlite", choices=["ssdlite", "fasterrcnn", "retinanet", "fcos"])
    d.add_argument("--data", default="../shared/data/coco128", help="COCO JSON/root or YOLO root")
    d.add_argument("--format", default="auto", choices=["auto", "coco", "yolo"])
    d.add_argument("--val-data", default=None, help="separate validation dataset (default: split --data)")
    d.add_argument("--val-fraction", type=float, default=0.2, help="share of images held out, by image id")
    d.add_argument("--split-seed", type=int, default=0)
    d.add_argument("--pretrained", default=None, help="true, a peer tag (torchvision, timm:...) or a weights file")
    d.add_argument("--img-size", type=int, default=320)
    d.add_argument("--epochs", type=int, default=20)
    d.add_argument("--max-steps", type=int, default=0, help="cap on optimizer steps (0 = none)")
    d.add_argument("--batch-size", type=int, default=8)
    d.add_argument("--lr", type=float, default=0.02)
    d.add_argument("--weight-decay", type=float, default=4e-5)
    d.add_argument("--warmup-epochs", type=float, default=1.0)
    d.add_argument("--backbone-lr-mult", type=float, default=1.0)
    d.add_argument("--freeze", type=_freeze, default="none", help="none, stem, all or N stages")
    d.add_argument("--frozen-bn", action="store_true", help="freeze every backbone BatchNorm")
    d.add_argument("--augment", default="full", choices=["full", "flip", "none"])
    d.add_argument("--amp", default="none", choices=["none", "bf16", "fp16", "auto"])
    d.add_argument("--grad-clip", type=float, default=0.0)
    d.add_argument("--fpn-channels", type=int, default=256)
    d.add_argument("--no-expansion-tap", action="store_true", help="SSDLite: tap the stride-16 block output")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=0)
    d.add_argument("--eval-every", type=int, default=1)
    d.add_argument("--resume", nargs="?", const=True, default=False, help="resume OUT/last.pt or a given checkpoint")
    d.add_argument("--out", default="runs/detect", help="output folder")
    d.add_argument("--device", default="cpu")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--json", action="store_true", help="print the metrics as JSON")
    d.set_defaults(func=cmd_detect)

    e = fsub.add_parser("eval", help="COCO mAP of a detection checkpoint", formatter_class=fmt)
    e.add_argument("checkpoint", help="last.pt / best.pt of a carve finetune detect run")
    e.add_argument("--data", default=None, help="dataset (default: the run's data)")
    e.add_argument("--format", default="auto", choices=["auto", "coco", "yolo"])
    e.add_argument("--subset", default="val", choices=["val", "all"], help="the run's validation split or all images")
    e.add_argument("--out", default=None, help="output folder (default: CHECKPOINT_DIR/eval)")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--examples", type=int, default=6, help="images in examples.png (0 = none)")
    e.add_argument("--per-class", type=int, default=5, help="show the N best and worst classes")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    c = fsub.add_parser("classify", help="new classifier head on an image folder, optional freezing",
                        formatter_class=fmt)
    c.add_argument("--backbone", required=True, help="zoo name, spec file or carve weights file")
    c.add_argument("--data", required=True, help="image-folder root with train/ and val/ (or test/)")
    c.add_argument("--pretrained", default=None, help="true, a peer tag or a weights file")
    c.add_argument("--epochs", type=int, default=5)
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--lr", type=float, default=0.05)
    c.add_argument("--backbone-lr-mult", type=float, default=0.1)
    c.add_argument("--freeze", type=_freeze, default="none", help="none, stem, all or N stages")
    c.add_argument("--frozen-bn", action="store_true")
    c.add_argument("--img-size", type=int, default=32)
    c.add_argument("--small-input", type=int, default=0, help="early strides removed (e.g. 2 for 32 px)")
    c.add_argument("--aug", default="weak", choices=["none", "weak", "medium", "strong"])
    c.add_argument("--train-per-class", type=int, default=0)
    c.add_argument("--val-per-class", type=int, default=0)
    c.add_argument("--max-steps", type=int, default=0)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="runs/classify")
    c.add_argument("--device", default="cpu")
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_classify)


def cmd_detect(args: argparse.Namespace) -> int:
    from carve.finetune import DetectConfig, detect
    from carve.finetune.evaluate import format_metrics

    cfg = DetectConfig(backbone=args.backbone, head=args.head, data=args.data, data_format=args.format,
                       val_data=args.val_data, val_fraction=args.val_fraction, split_seed=args.split_seed,
                       pretrained=_pretrained(args.pretrained), img_size=args.img_size, epochs=args.epochs,
                       max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                       weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                       backbone_lr_mult=args.backbone_lr_mult, freeze=args.freeze, frozen_bn=args.frozen_bn,
                       augment=args.augment, amp=args.amp, grad_clip=args.grad_clip, fpn_channels=args.fpn_channels,
                       expansion_tap=not args.no_expansion_tap, seed=args.seed, workers=args.workers,
                       eval_every=args.eval_every, resume=args.resume, out_dir=args.out, device=args.device,
                       progress=not args.no_progress)
    res = detect(cfg)
    if args.json:
        print(json.dumps(dict(res.metrics, out_dir=str(res.out_dir), checkpoint=str(res.checkpoint)), indent=2))
        return 0
    print(f"{args.backbone} + {args.head}: {res.num_train} train / {res.num_val} val images, "
          f"{len(res.history)} epochs, {res.wall_s:.0f} s ({res.images_per_s:.2f} img/s training)")
    print(f"data: {res.data_stats}")
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
    print(f"{args.checkpoint}: {out['images']} images ({args.subset})")
    print(format_metrics(out, per_class=args.per_class))
    for name, path in out["files"].items():
        print(f"{name}: {path}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from carve.finetune import ClassifyConfig, classify

    cfg = ClassifyConfig(model=args.backbone, data=args.data, out_dir=args.out, pretrained=_pretrained(args.pretrained),
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         backbone_lr_mult=args.backbone_lr_mult, freeze=args.freeze, frozen_bn=args.frozen_bn,
                         img_size=args.img_size, small_input=args.small_input, aug=args.aug,
                         train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                         max_steps=args.max_steps, workers=args.workers, seed=args.seed, device=args.device,
                         progress=not args.no_progress)
    res = classify(cfg)
    summary = dict(top1=res.top1, top5=res.top5, frozen_params=res.frozen_params,
                   trainable_params=res.trainable_params, weights=str(res.weights), wall_s=round(res.wall_s, 1))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.backbone} on {args.data}: top-1 {res.top1:.2f}%  top-5 {res.top5:.2f}%  "
              f"({res.frozen_params:,} frozen / {res.trainable_params:,} trainable params, {res.wall_s:.0f} s)")
        print(f"weights: {res.weights}")
    return 0
