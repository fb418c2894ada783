"""``carve train ...`` and ``carve eval ...``."""

from __future__ import annotations

import argparse
import json

from .flags import config_flags


def register(sub: argparse._SubParsersAction) -> None:
    from carve.train.config import TrainConfig

    p = sub.add_parser("train", help="train a zoo model on an image folder (runs under torchrun for DDP)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config_flags(p, TrainConfig, positional=("model",), bool_values=True)
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="top-1/top-5 of a model or weights file on an image folder's val/test split")
    e.add_argument("model", help="carve weights file (.safetensors / checkpoint .pt) or zoo name")
    e.add_argument("--data", default="../shared/data/cifar10", help="image-folder root with val/ or test/")
    e.add_argument("--img-size", type=int, default=32)
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--per-class", type=int, default=0, help="first N images per class (0 = all)")
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--small-input", type=int, default=0, help="strides removed (zoo names only)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    import logging
    import os

    from carve.train import fit
    from carve.train.ddp import cleanup

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = fit(args.config_flags.build(args))
    cleanup()
    if os.environ.get("RANK", "0") == "0":
        print(f"best top-1 {result.best_top1:.2f}  final top-1 {result.final_top1:.2f}  "
              f"{result.images_per_s:.0f} img/s  {result.wall_s:.0f} s")
        print(f"weights: {result.best_path}  checkpoint: {result.last_path}  curves: {result.out_dir}/curve.png")
        if result.skipped_images:
            print(f"skipped {result.skipped_images} training image(s) that could not be decoded (named in the log)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from carve.train import eval_loader, evaluate
    from carve.zoo import create_model

    weights_file = args.model.endswith((".safetensors", ".pt", ".pth"))
    model = create_model(args.model) if weights_file else None
    saved = ((model.pretrained_cfg.get("metrics") or {}) if model is not None else {}).get("classes")
    # labels index into the checkpoint's class list, else the training split's (eval_loader's default)
    loader = eval_loader(args.data, args.img_size, args.batch_size, args.per_class, args.workers, classes=saved)
    if model is None:
        model = create_model(args.model, num_classes=len(loader.dataset.classes), small_input=args.small_input)
    metrics = evaluate(model, loader)
    if args.json:
        print(json.dumps(metrics))
    else:
        skipped = f", {metrics['skipped']} skipped: could not be decoded" if metrics["skipped"] else ""
        print(f"{args.model}: top-1 {metrics['top1']:.2f}  top-5 {metrics['top5']:.2f}  "
              f"loss {metrics['loss']:.4f}  ({metrics['n']} images{skipped})")
    return 0
