"""``carve export MODEL|SPEC|WEIGHTS --to onnx|openvino|executorch|coreml [--int8 --calib DATA] [--dynamic-batch]
[--cluster-bits N] [-o PATH]``."""

from __future__ import annotations

import argparse
import json

from .flags import config_flags, flag


def register(sub: argparse._SubParsersAction) -> None:
    from carve.compress.shipping import ExportConfig

    p = sub.add_parser("export", help="ship a model as ONNX, OpenVINO IR, ExecuTorch or Core ML (FP32, INT8 or palettised) with a "
                            "parity report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config_flags(p, ExportConfig, positional=("model",),
                 flags={"out": flag("-o", metavar="PATH"), "calib": flag(metavar="DATA"),
                        "data": flag(metavar="DATA")})
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from carve.compress.shipping import export_model

    report = export_model(args.config_flags.build(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['name']} -> {report['artefact']} ({report['to']}, {report['precision']}, "
          f"{report['size_bytes'] / 1e6:.2f} MB, input {report['input_shape']})")
    if "parity" in report:
        p = report["parity"]
        print(f"parity vs PyTorch on {p['images']} images: top-1 agreement {p['top1_agreement']:.1%}, "
              f"max |diff| {p['max_abs_diff']:.2e}")
    if "clustering" in report:
        c = report["clustering"]
        print(f"palettised {c['bits']}-bit: {c['layers']} layers ({len(c['skipped'])} kept float), "
              f"{c['packed_bytes'] / 1e6:.2f} MB as indices + palettes vs {c['float_bytes'] / 1e6:.2f} MB FP32")
        if "vs_fp32" in c:
            print(f"clustered vs FP32 in PyTorch on {c['vs_fp32']['images']} images: top-1 agreement "
                  f"{c['vs_fp32']['top1_agreement']:.1%}")
    if "parity_skipped" in report:
        print(f"parity not measured: {report['parity_skipped']}")
    check = report.get("package_check")
    if check is not None:
        print(f"package read back: {check['weight_tensors']}/{check['reference_tensors']} weights, max |diff| "
              f"{check['max_weight_diff']:.2e}, ops {check['ops']}: " + ("ok" if check["ok"] else
                                                                          "; ".join(check["problems"])))
    if "latency" in report:
        lat = report["latency"]
        print(f"latency here ({report['runtime']}, batch 1, {report['input_size']} px, {lat['threads']} threads): "
              f"{lat['median_ms']:.3f} ms median")
    print(f"report: {report['report']}")
    return 0 if report.get("package_check", {}).get("ok", True) else 1
