"""``carve supernet train|extract``: train a weight-sharing supernet, take a sub-network out of it as a model."""

from __future__ import annotations

import argparse
import json

from .flags import config_flags


def register(sub: argparse._SubParsersAction) -> None:
    from carve.train.supernet_training import SupernetTrainConfig

    supernet = sub.add_parser("supernet", help="weight-sharing supernet: train it, extract sub-networks")
    ssub = supernet.add_subparsers(dest="supernet_command", required=True, metavar="ACTION")

    p = ssub.add_parser("train", help="train a supernet (sandwich rule, in-place distillation)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config_flags(p, SupernetTrainConfig, bool_values=True)
    p.set_defaults(func=cmd_train)

    p = ssub.add_parser("extract", help="a sub-network with the supernet's weights as a carve weights file")
    p.add_argument("supernet", help="supernet weights file or shipped tag (carve:tiny-imagenet)")
    p.add_argument("spec", help="spec file (.json/.yaml), zoo name, largest or smallest")
    p.add_argument("-o", "--output", default="subnet.safetensors")
    p.add_argument("--data", default=None, help="re-estimate BatchNorm statistics on this data's training images")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=8, help="batches of --batch-size images for the re-estimation")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_extract)


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    from carve.train import train_supernet

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = train_supernet(args.config_flags.build(args))
    print(f"top-1 largest {result.top1['largest']:.2f}  smallest {result.top1['smallest']:.2f}  "
          f"weights: {result.final_path}  checkpoint: {result.out_dir}/last.pt")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from carve.zoo import resolve_spec, save_weights
    from carve.zoo.supernet import extract, load_supernet

    net = load_supernet(args.supernet)
    named = {"largest": net.largest, "smallest": net.smallest}
    spec = named[args.spec]() if args.spec in named else resolve_spec(args.spec)[0]
    model = extract(net, spec)
    metrics = dict(supernet=str(args.supernet))
    if args.data:
        from carve.train import calibration_loader, recalibrate_bn

        metrics["bn_images"] = recalibrate_bn(model, calibration_loader(args.data, args.img_size, args.batch_size,
                                                                         args.batches))
    path = save_weights(model.eval(), args.output, metrics=metrics)
    out = dict(output=str(path), spec=model.spec.name, hash=model.spec.hash(), **metrics)
    print(json.dumps(out) if args.json else f"wrote {path} ({model.spec.name}, spec {model.spec.hash()})")
    return 0
