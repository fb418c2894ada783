"""Weight clustering: at most 2^bits values per palette, outputs kept close, size that shrinks as the
indices do, and the same palettes stored by Core ML."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from carve.compress import fold
from carve.compress.clustering import cluster, clustered_size, distinct_per_palette
from carve.compress.coreml_check import check_mlpackage
from carve.latency.coreml_runtime import export_mlpackage, read_mlpackage
from carve.zoo import create_model

from .conftest import TINY_SPEC, cifar_batches, randomize_bn


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return randomize_bn(create_model(TINY_SPEC)).eval()


@pytest.fixture(scope="module")
def clustered8(tiny) -> nn.Module:
    return cluster(tiny, bits=8)[0]  # k-means with 256 centres: the slow one, clustered once


def layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def test_8_bit_palettes_keep_outputs_close_on_real_images(tiny, clustered8):
    clustered = clustered8
    assert set(clustered.cluster_layers) == set(layers(clustered))
    assert clustered.cluster_skipped == [] and tiny.stem.conv.weight.unique().numel() > 256  # original untouched
    for name, layer in layers(clustered).items():
        assert distinct_per_palette(layer) <= 256, name
    x = torch.cat([b[0] for b in cifar_batches("test", per_class=4)])
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(clustered(x), tiny(x), dim=1)
    assert cos.min() > 0.99
    with torch.no_grad():  # clustering 4-bit moves the outputs further than 8-bit
        cos4 = nn.functional.cosine_similarity(cluster(tiny, bits=4)[0](x), tiny(x), dim=1)
    assert cos4.mean() < cos.mean()


def test_grouped_palettes_per_output_channels(tiny):
    clustered, _ = cluster(tiny, bits=4, group_size=8)
    assert clustered.cluster_skipped == ["classifier"]  # 10 outputs: 8 does not divide them
    folded = fold(tiny)[0]
    assert torch.equal(clustered.classifier.weight, folded.classifier.weight)
    for name in clustered.cluster_layers:
        layer = layers(clustered)[name]
        assert distinct_per_palette(layer, 8) <= 16, name
    assert max(distinct_per_palette(layers(clustered)[n]) for n in clustered.cluster_layers) > 16


def test_size_shrinks_with_the_bits(tiny, clustered8):
    sizes = {}
    for bits in (8, 6, 4):
        model = clustered8 if bits == 8 else cluster(tiny, bits=bits)[0]
        size = clustered_size(model)
        weights = [m.weight.numel() for m in layers(model).values()]
        expected = size.float_bytes - sum(4 * n - math.ceil(n * bits / 8) - 4 * 2 ** bits for n in weights)
        assert size.packed_bytes == expected and size.clustered_elements == sum(weights)
        assert size.float_bytes == sum(p.numel() * 4 for p in fold(tiny)[0].parameters())
        sizes[bits] = size
    assert sizes[8].packed_bytes > sizes[6].packed_bytes > sizes[4].packed_bytes
    assert 2.5 < sizes[8].ratio < 4 < sizes[4].ratio < 8


def test_core_ml_stores_the_palettes(tiny, tmp_path):
    clustered, _ = cluster(tiny, bits=4)
    path = export_mlpackage(clustered, tmp_path / "c4.mlpackage", input_size=32)
    check = check_mlpackage(clustered, path, input_size=32)
    assert check.ok, check.problems
    assert check.max_weight_diff == 0 and check.max_palette_size == 16
    assert check.palettised_tensors == len(clustered.cluster_layers) == check.ops["constexpr_lut_to_dense"]
    packed = clustered_size(clustered).packed_bytes
    assert packed < check.weight_file_bytes < 1.2 * packed  # the blob adds alignment and headers
    fp32 = read_mlpackage(export_mlpackage(tiny, tmp_path / "fp32.mlpackage", input_size=32))
    assert fp32.weight_file_bytes > 5 * check.weight_file_bytes


def test_bad_settings_are_refused_by_name(tiny):
    assert cluster(tiny, bits=4)[1] is tiny.spec
    with pytest.raises(ValueError, match="cluster_bits: expected one of"):
        cluster(tiny, bits=5)
    with pytest.raises(ValueError, match="cluster_group_size: expected an integer >= 0"):
        cluster(tiny, bits=4, group_size=-1)


def test_compress_cli_clusters_and_ships_the_palettes_to_core_ml(tmp_path, capsys):
    import json

    from carve.cli import main

    from .conftest import cifar_dir

    spec_file = tmp_path / "tiny.json"
    spec_file.write_text(json.dumps(TINY_SPEC))
    base = ["compress", str(spec_file), "--eval", str(cifar_dir()), "--eval-per-class", "3", "--img-size", "32",
            "--no-latency", "--out-dir", str(tmp_path / "out")]
    assert main(base + ["--cluster-bits", "4", "--quantize", "int8"]) == 2
    assert "cluster_bits: INT8 quantization would replace the palettes" in capsys.readouterr().err
    assert main(base + ["--cluster-group-size", "8"]) == 2
    assert "cluster_group_size: applies with cluster_bits only" in capsys.readouterr().err
    assert main(base + ["--cluster-bits", "4", "--export", "coreml", "--json"]) == 0
    original, clustered, exported = json.loads(capsys.readouterr().out)["rows"]
    assert clustered["name"] == "cluster 4-bit" and clustered["notes"]["kept_float"] == []
    assert clustered["size_bytes"] == clustered["notes"]["packed_bytes"] < original["size_bytes"] / 5
    assert clustered["top1"] is not None and clustered["params"] < original["params"]  # BN folded away
    assert exported["notes"]["coreml_palettised"] == clustered["notes"]["layers"] == 20
    assert exported["notes"]["coreml_weight_bytes"] < 1.2 * clustered["size_bytes"]
    assert (tmp_path / "out" / "model.mlpackage" / "Manifest.json").is_file()
