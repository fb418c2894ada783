"""carve.cli.flags: flags generated from the configs keep the names the commands always accepted."""

from __future__ import annotations

import pytest

from carve.cli import build_parser, main


def config(argv: list[str]):
    args = build_parser().parse_args(argv)
    return args.config_flags.build(args)


def test_search_run_aliases_and_nested_fields():
    cfg = config(["search", "run", "--objective", "params", "--runtime", "eager", "--seed", "5", "--out", "o",
                  "--timeout", "10", "--latency-budget", "0.5s", "--macs-budget", "300M", "--no-remeasure",
                  "--address", "host:1", "--warm-start", "a", "b", "--study-name", "s", "--threads", "1"])
    assert (cfg.objective.accuracy, cfg.objective.runtime, cfg.objective.threads) == ("params", "eager", 1)
    assert cfg.seed == cfg.objective.seed == 5  # a name both levels have sets both
    assert (cfg.out_dir, cfg.timeout_s, cfg.latency_budget_ms, cfg.macs_budget) == ("o", 10.0, 500.0, 3e8)
    assert (cfg.remeasure, cfg.ray_address, cfg.warm_start, cfg.study_name) == (False, "host:1", ("a", "b"), "s")


def test_finetune_train_and_compress_flags():
    cfg = config(["finetune", "detect", "--backbone", "b", "--format", "yolo", "--out", "o", "--no-expansion-tap",
                  "--no-progress", "--resume", "--pretrained", "true", "--freeze", "2", "--train-ids", "1", "2"])
    assert (cfg.data_format, cfg.out_dir, cfg.expansion_tap, cfg.progress) == ("yolo", "o", False, False)
    assert (cfg.resume, cfg.pretrained, cfg.freeze, cfg.train_ids) == (True, True, 2, [1, 2])
    cfg = config(["finetune", "classify", "--backbone", "b", "--data", "d", "--out", "o", "--freeze", "stem",
                  "--frozen-bn", "--no-progress"])
    assert (cfg.model, cfg.data, cfg.out_dir, cfg.freeze, cfg.frozen_bn, cfg.progress) == ("b", "d", "o", "stem",
                                                                                           True, False)
    cfg = config(["train", "m", "--channels-last", "--progress", "false", "--resume", "runs/x/last.pt",
                  "--drop-rate", "none", "--no-tensorboard"])
    assert (cfg.model, cfg.channels_last, cfg.progress, cfg.resume) == ("m", True, False, "runs/x/last.pt")
    assert cfg.drop_rate is None and cfg.tensorboard is False
    cfg = config(["compress", "m", "--fold-bn", "--prune", "0.3", "--export", "onnx", "--export", "program",
                  "--no-latency", "--finetune", '{"lr": 0.1}'])
    assert (cfg.fold_bn, cfg.prune, cfg.export, cfg.latency, cfg.finetune) == (
        True, 0.3, ["onnx", "program"], False, {"lr": 0.1})


def test_config_file_then_flags_and_errors_name_the_file(tmp_path, capsys):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 4\nlr: 0.3\n")
    cfg = config(["train", "m", "--config", str(path), "--lr", "0.5"])
    assert (cfg.epochs, cfg.lr) == (4, 0.5)
    path.write_text("epochs: 0\n")
    assert main(["train", "m", "--config", str(path)]) == 2
    assert f"{path}: epochs: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["train", "m", "--config", str(path), "--epochs", "0"]) == 2
    assert "error: epochs: expected an integer >= 1" in capsys.readouterr().err
    (tmp_path / "s.json").write_text('{"objective": {"runtime": "tensorrt"}}')
    assert main(["search", "run", "--config", str(tmp_path / "s.json")]) == 2
    assert "s.json: objective.runtime: expected one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config(["finetune", "classify", "--backbone", "b"])
    assert "required: --data" in capsys.readouterr().err


def test_export_flags_serve_the_model_or_the_detector_config(tmp_path):
    from carve.config import ConfigError

    args = build_parser().parse_args(["export", "m.pt", "-o", "x.onnx", "--size", "64", "--batch", "2",
                                      "--format", "voc", "--int8", "--calib", "c"])
    flags = args.config_flags
    model, detector = flags.build(args, "export"), flags.build(args, "detector")
    assert (model.model, model.out, model.size, model.int8) == ("m.pt", "x.onnx", 64, True)
    assert (detector.model, detector.out, detector.size, detector.batch, detector.data_format) == (
        "m.pt", "x.onnx", 64, 2, "voc")
    assert flags.peek(args, "model") == "m.pt" and flags.peek(args, "int8") is True
    assert flags.peek(args, "subset") is None
    args = build_parser().parse_args(["export", "m", "--to", "coreml"])
    assert args.config_flags.build(args, "export").to == "coreml"
    with pytest.raises(ConfigError, match="to"):  # only the config that is built is checked
        args.config_flags.build(args, "detector")
    file = tmp_path / "export.yaml"
    file.write_text("model: m\nsize: 40\n")  # the fields of the config the input needs
    args = build_parser().parse_args(["export", "--config", str(file), "--size", "48"])
    assert args.config_flags.peek(args, "model") == "m"
    assert (args.config_flags.build(args, "export").size, args.config_flags.build(args, "detector").size) == (48, 48)
