"""``carve export MODEL|SPEC|WEIGHTS|DETECT_CHECKPOINT --to onnx|openvino|executorch|litert|coreml
[--int8 --calib DATA] [--dynamic-batch] [--cluster-bits N] [-o PATH]``.

A checkpoint of ``carve finetune detect`` (``last.pt``/``best.pt``) is recognised by its format
and shipped as a detector (boxes, scores, labels; NMS in the graph, or for ExecuTorch and LiteRT
after the program in carve's post-processing) with a COCO mAP check; with ``--int8``
its backbone and head are INT8, calibrated on the detection dataset ``--calib`` names.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import make_dataclass
from typing import Any

from .flags import config_flags, flag


def export_command() -> type:
    """The config of ``carve export``'s flags: ``export`` (a model's ``ExportConfig``) and ``detector``
    (a detect checkpoint's ``DetectorExportConfig``); a flag both have sets both, and only the one
    the input needs is built."""
    from carve.compress.shipping import ExportConfig
    from carve.config import Config
    from carve.finetune.detector_export import DetectorExportConfig

    return make_dataclass("ExportCommand", [("export", ExportConfig), ("detector", DetectorExportConfig)],
                          bases=(Config,))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="ship a model or a detect checkpoint as ONNX, OpenVINO IR, ExecuTorch, LiteRT or "
                                      "Core ML (FP32, INT8 or palettised) with a parity report",
                       description="A carve finetune detect checkpoint (last.pt/best.pt) is exported as a "
                                   "detector (--to onnx or openvino with NMS in the graph, --to executorch or "
                                   "litert with NMS after the program, in Python; --size, --batch, --data, --subset, "
                                   "--parity-images for its COCO mAP check; the run's data and img_size by "
                                   "default; --int8 --calib DATASET [--calib-images N] for an INT8 backbone "
                                   "and head); anything else as a classifier. --config FILE holds the fields of "
                                   "DetectorExportConfig or ExportConfig, as the input needs.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config_flags(p, export_command(), positional=("export.model", "detector.model"),
                 flags={"export.out": flag("-o", metavar="PATH"), "export.calib": flag(metavar="DATA"),
                        "export.data": flag(metavar="DATA"), "detector.data_format": flag("--format")})
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from carve.finetune.detector_export import is_detector_checkpoint

    flags = args.config_flags
    model = flags.peek(args, "model")
    if model is not None and is_detector_checkpoint(model):
        if flags.peek(args, "dynamic_batch"):
            raise ValueError(f"{model}: a detector is exported with a fixed batch (--batch N); --dynamic-batch is "
                             "for classifiers")
        return _print_detector(flags.build(args, "detector"), args.json)
    from carve.compress.shipping import export_model

    report = export_model(flags.build(args, "export"))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['name']} -> {report['artefact']} ({report['to']}, {report['precision']}, "
          f"{report['size_bytes'] / 1e6:.2f} MB, input {report['input_shape']})")
    if "parity" in report:
        p = report["parity"]
        print(f"parity vs PyTorch on {p['images']} images: top-1 agreement {p['top1_agreement']:.1%}, "
              f"max |diff| {p['max_abs_diff']:.2e}")
        if "note" in p:
            print(f"note: {p['note']}")
    _print_coreml(report)
    _print_latency(report)
    return 0 if report.get("package_check", {}).get("ok", True) else 1


def _print_coreml(report: dict[str, Any]) -> None:
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


def _print_detector(cfg: Any, as_json: bool) -> int:
    from carve.finetune.detector_export import export_detector

    report = export_detector(cfg)
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['backbone']} + {report['head']} -> {report['artefact']} ({report['to']}, "
          f"{report['size_bytes'] / 1e6:.2f} MB, input {report['input_shape']}, "
          f"outputs {', '.join(report['outputs'])})")
    m, p = report["map"], report["parity"]
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    print(f"COCO mAP on {m['images']} images ({m['data']}, {m['subset']}): PyTorch AP {pct(m['pytorch']['AP'])} / "
          f"AP50 {pct(m['pytorch']['AP50'])}, {report['runtime']} AP {pct(m['exported']['AP'])} / "
          f"AP50 {pct(m['exported']['AP50'])} (difference {m['difference']['AP']:+.4f})")
    if "thresholds_outside" in report:
        print(f"NMS after the program (carve post-processing): {report['thresholds_outside']}")
    print(f"detections vs PyTorch: top-{p['top']} labels agree {p['top_label_agreement']:.1%}, "
          f"max box diff {p['max_box_diff_px']:.2e} px, same count on {p['same_count_share']:.0%} of images")
    if "quantization" in report:
        q, f, a = report["quantization"], m["fp32_graph"], report["int8_vs_fp32_graph"]
        print(f"INT8 ({q['calib_images']} calibration images from {q['calib']}): FP32 graph AP {pct(f['AP'])} / "
              f"AP50 {pct(f['AP50'])}; INT8 top-{a['top']} boxes vs FP32 graph: mean IoU {a['mean_iou']:.3f}, "
              f"{a['matched_share']:.1%} at IoU >= {a['iou_threshold']}")
        if "latency_fp32" in report:
            print(f"latency FP32 graph {report['latency_fp32']['median_ms']:.3f} ms -> INT8 "
                  f"{report['latency']['median_ms']:.3f} ms ({report['speedup_int8']:.2f}x)")
    _print_latency(report)
    return 0


def _print_latency(report: dict[str, Any]) -> None:
    if "latency" in report:
        lat = report["latency"]
        print(f"latency here ({report['runtime']}, batch {lat['batch']}, {report['input_shape'][-1]} px, "
              f"{lat['threads']} threads): {lat['median_ms']:.3f} ms median")
    print(f"report: {report['report']}")
