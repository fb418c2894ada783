"""Per-block latency tables: decomposition, sums, fitted correction, lazy extension, storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.latency import QUICK, LatencyCache, measure
from carve.latency.parts import decompose, part_modules
from carve.latency.table import Correction, LatencyTable, build_table, fit_correction, predict
from carve.zoo import create_model, parse_spec


def spec_with(kernels: list[int], expansions: list[int], name: str):
    blocks = [dict(kind="ir", out_channels=16, kernel=k, expansion=e, stride=2 if i == 0 else 1)
              for i, (k, e) in enumerate(zip(kernels, expansions))]
    return parse_spec(dict(name=name, family="test", stem=dict(channels=8, stride=2), stages=[blocks],
                           head=dict(conv_channels=32, num_classes=10)))


SPECS = [spec_with([3, 3], [2, 2], "a"), spec_with([3, 5], [2, 4], "b"), spec_with([5, 3, 3], [4, 2, 2], "c")]


def test_decompose_matches_the_network() -> None:
    spec = SPECS[2]
    parts = decompose(spec, 32)
    assert [p.kind for p in parts] == ["stem", "block", "block", "block", "head"]
    assert [p.feature_size for p in parts] == [32, 16, 8, 8, 8]
    import torch

    torch.manual_seed(0)
    net = create_model(spec).eval()
    torch.manual_seed(0)
    mods = part_modules(spec)
    with torch.inference_mode():
        x = torch.randn(1, 3, 32, 32)
        y = x
        for part, mod in zip(parts, mods):  # chaining the parts reproduces the whole network
            assert y.shape[1:] == (part.in_channels, part.feature_size, part.feature_size)
            y = mod(y)
        assert torch.allclose(y, net(x), atol=1e-5)
    assert parts[1].key != decompose(spec, 64)[1].key  # feature size is part of the key


def test_fit_correction_recovers_a_linear_law() -> None:
    law = [(1, 5, 0.3), (2, 9, 1.1), (3, 6, 0.2), (4, 12, 2.5), (5, 7, 0.9), (6, 20, 1.7), (7, 8, 3.0), (2, 14, 0.4)]
    c = fit_correction([[s, n, w, 2.0 * s + 0.1 * n + 0.5 * w + 1.0] for s, n, w in law])
    assert (c.a, c.b, c.d, c.c) == pytest.approx((2.0, 0.1, 0.5, 1.0), abs=1e-6) and c.fitted_on == 8
    six = fit_correction([[s, n, w, 2.0 * s + 0.1 * n + 1.0] for s, n, w in law[:6]])
    assert (six.a, six.b, six.d, six.c) == pytest.approx((2.0, 0.1, 0.0, 1.0), abs=1e-6)
    two = fit_correction([[1, 5, 0.1, 3.0], [2, 9, 0.2, 6.0]])
    assert (two.a, two.b, two.c) == pytest.approx((3.0, 0.0, 0.0))
    assert Correction().apply(4.0, 7, 1.5) == 4.0


def test_build_table_sums_parts_and_corrects(tmp_path: Path) -> None:
    db = LatencyCache(tmp_path / "latency.db")
    table = build_table(SPECS[:2], input_sizes=32, threads=1, fit_models=2, cache=db, protocol=QUICK,
                        save=tmp_path / "table.json", progress=False)
    distinct = {p.key for s in SPECS[:2] for p in decompose(s, 32)}
    assert set(table.entries) == distinct  # shared stem/head/first block are measured once
    spec = SPECS[1]
    parts = decompose(spec, 32)
    summed = 0.0
    for part, mod in zip(parts, part_modules(spec)):  # each entry is the cached isolated measurement
        r = measure(mod, input_size=part.feature_size, in_channels=part.in_channels, key=part.short_key,
                    threads=1, cache=db, protocol=QUICK)
        assert r.cached and r.median_ms == table.entries[part.key]
        summed += r.median_ms
    params_m = sum(p.numel() for p in create_model(spec).parameters()) / 1e6
    assert table.summed(spec, 32) == (pytest.approx(summed), len(parts), pytest.approx(params_m))
    corr = table.corrections["32"]
    assert corr.fitted_on == 2 and corr.a > 0
    assert predict(spec, table, 32) == pytest.approx(corr.a * summed)
    with pytest.raises(KeyError, match="lacks"):
        predict(SPECS[2], table, 32)
    before = len(db)
    grown = build_table([SPECS[2]], input_sizes=32, threads=1, fit_models=2, cache=db, protocol=QUICK,
                        table=table, save=False, progress=False)  # lazily adds only the new parts
    new = {p.key for p in decompose(SPECS[2], 32)} - distinct
    assert len(grown.entries) == len(distinct) + len(new) and len(db) == before + len(new)
    assert predict(SPECS[2], grown, 32) > 0
    loaded = LatencyTable.load(tmp_path / "table.json")
    assert loaded.fingerprint == table.fingerprint and predict(spec, loaded, 32) == pytest.approx(predict(spec, table, 32))


def test_table_rejects_other_conditions(tmp_path: Path) -> None:
    table = LatencyTable(fingerprint={"device": "cpu"}, threads=1)
    with pytest.raises(ValueError, match="threads"):
        build_table(SPECS[:1], input_sizes=32, threads=2, table=table, cache=False, save=False, progress=False)
    with pytest.raises(FileNotFoundError, match="latency table"):
        LatencyTable.load(tmp_path / "missing.json")


def test_sample_specs_from_a_search_space() -> None:
    from carve.latency.table import sample_specs
    from carve.search.spaces import get_space

    specs = sample_specs(get_space("mbconv"), 4, seed=1)
    assert len(specs) == 4 and len({s.hash() for s in specs}) == 4
    assert [s.hash() for s in sample_specs(get_space("mbconv"), 4, seed=1)] == [s.hash() for s in specs]
    assert all(decompose(s, 224)[-1].kind == "head" for s in specs)
