import json

from carve.cli import main
from carve.zoo import create_model


def test_run_show_export_plot(tiny_space, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--out", str(out)]
    assert main(["search", "run", "--space", tiny_space, "--objective", "params", "--runtime", "eager",
                 "--trials", "3", "--quick-latency", "--latency-cache", "off", "--threads", "1",
                 "--macs-budget", "1G", "--small-input", "0", "--data", str(tmp_path / "none")] + common) == 0
    text = capsys.readouterr().out
    assert "3 complete, 0 failed" in text and "remeasured" in text
    assert main(["search", "show", "tiny-params", "--json"] + common) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["complete"] == 3 and shown["pareto"]
    number = shown["pareto"][0]["number"]
    assert shown["pareto"][0]["remeasured_ms"] > 0
    arch = tmp_path / "arch.json"
    assert main(["search", "export", "tiny-params", "--trial", str(number), "-o", str(arch)] + common) == 0
    assert create_model(str(arch)).spec.to_dict() == shown["pareto"][0]["spec"]
    png = tmp_path / "pareto.png"
    assert main(["search", "plot", "tiny-params", "-o", str(png), "--zoo", "none"] + common) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_errors_are_clear(tmp_path, capsys):
    assert main(["search", "show", "nosuch", "--out", str(tmp_path)]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert main(["search", "run", "--space", "nosuch.yaml", "--out", str(tmp_path)]) == 2
    assert "nosuch.yaml" in capsys.readouterr().err


def test_search_package_is_import_light():
    import subprocess
    import sys

    code = "import sys, carve.search; assert not {'optuna', 'ray'} & set(sys.modules), sorted(sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_a_search_on_predicted_latency_re_measures_its_pareto_set(tiny_space, tmp_path, capsys):
    from carve.latency import QUICK
    from carve.latency.table import build_table
    from carve.search import get_space

    table = tmp_path / "table.json"
    build_table(get_space(tiny_space), input_sizes=32, threads=1, samples=60, fit_models=2, cache=False,
                protocol=QUICK, save=table, progress=False)
    out = tmp_path / "run"
    assert main(["search", "run", "--space", tiny_space, "--objective", "params", "--runtime", "eager",
                 "--latency", "predict", "--latency-table", str(table), "--trials", "4", "--quick-latency",
                 "--latency-cache", "off", "--threads", "1", "--small-input", "0", "--data", str(tmp_path / "none"),
                 "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_complete"] == 4 and result["pareto"]
    for entry in result["pareto"]:  # predicted during the search, measured at the end
        assert entry["remeasured_ms"] > 0 and entry["remeasured_ms"] != entry["latency_ms"]
