"""WebDataset shards as training data, on real Tiny ImageNet shards: index, held-out split, streaming, fit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from carve.train import TrainConfig, fit
from carve.train.data import class_names, eval_loader, set_epoch, train_loader
from carve.train.shards import ShardDataset, held_out, is_shards, select, shard_index

from .conftest import TINY_SPEC

TINY_IMAGENET = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tiny-imagenet"


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real shards: 2,000 Tiny ImageNet samples and a small one holding a corrupt image."""
    import webdataset as wds

    if not (TINY_IMAGENET / "train-0000.tar.gz").is_file():
        pytest.skip(f"Tiny ImageNet shards not found at {TINY_IMAGENET}")
    out = tmp_path_factory.mktemp("shards")
    shutil.copy(TINY_IMAGENET / "train-0000.tar.gz", out / "train-0000.tar.gz")
    shutil.copy(TINY_IMAGENET / "classes.txt", out / "classes.txt")
    with wds.TarWriter(str(out / "train-0001.tar")) as sink:
        for i, sample in enumerate(wds.tarfile_samples([dict(url=str(TINY_IMAGENET / "train-0001.tar.gz"))])):
            if i == 40:
                break
            sink.write({"__key__": sample["__key__"], "jpg": sample["jpg"], "cls": sample["cls"]})
        sink.write({"__key__": "broken_0", "jpg": b"not a jpeg", "cls": b"3"})
    return out


def test_index_split_and_class_names(shards: Path) -> None:
    assert is_shards(shards) and is_shards("elsewhere/train-{0000..0001}.tar") and not is_shards(shards.parent)
    index = shard_index(shards)
    assert len(index) == 2041 and len(index.classes) == 202 and index.classes[0] == "n01443537"
    assert class_names(shards) == list(index.classes)
    train, val = select(index, "train", 0.1), select(index, "val", 0.1)
    assert not train & val and len(train) + len(val) == 2041
    assert 0.07 < len(val) / 2041 < 0.13
    assert all(held_out(k, 0.1) for k in val)  # a function of the key alone: the same for every seed
    assert len(select(index, "train", 0.1, per_class=2)) <= 2 * 202
    with pytest.raises(FileNotFoundError, match="shard file"):
        shard_index(str(shards / "train-{0000..0003}.tar.gz"))


def test_training_stream_is_seeded_balanced_and_exact_in_length(shards: Path) -> None:
    loader = train_loader(shards, 32, batch_size=16, aug="weak", workers=0, seed=3)
    set_epoch(loader, 0, 3)
    first = [y for _, y, _ in loader]
    set_epoch(loader, 0, 3)
    again = [y for _, y, _ in loader]
    set_epoch(loader, 1, 3)
    other = [y for _, y, _ in loader]
    assert len(first) == len(loader) == len(other)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    # two DDP ranks with two workers each: the same number of samples each, none seen twice
    seen, counts = [], []
    for rank in (0, 1):
        ds = ShardDataset(shards, "train", None, shuffle=True, seed=0, batch_size=8, workers=2, rank=rank,
                          world_size=2)
        keys = []
        for worker in (0, 1):
            ds_keys = [name for _, name in _named(ds, rank * 2 + worker, 4)]
            keys += ds_keys
        counts.append(len(keys))
        seen += keys
    assert counts[0] == counts[1] == 2 * ds.quota and ds.quota % 8 == 0
    assert len(seen) == len(set(seen))


def _named(ds: ShardDataset, stream: int, streams: int):
    """The stream's samples as (image, shard:key) pairs, decoding skipped."""
    ds._decode = lambda data, target, name: (data, name)  # noqa: E731
    return list(ds._train_stream(stream, streams))


def test_held_out_loader_and_corrupt_samples(shards: Path, caplog) -> None:
    val = eval_loader(shards, 32, batch_size=64, workers=0)
    n = sum(len(y) for _, y, _ in val)
    assert n == len(select(shard_index(shards), "val", 0.1)) - int(held_out("broken_0", 0.1))
    assert not held_out("broken_0", 0.1)
    skipped = [s for _, _, bad in eval_loader(shards, 32, batch_size=512, workers=0, split=("train",)) for s in bad]
    assert len(skipped) == 1 and skipped[0].endswith("train-0001.tar:broken_0")


def test_fit_trains_on_shards(shards: Path, tmp_path: Path) -> None:
    spec = dict(TINY_SPEC, head=dict(TINY_SPEC["head"], num_classes=202))
    cfg = TrainConfig(model=spec, data=str(shards), out_dir=str(tmp_path), epochs=1, batch_size=32, img_size=32,
                      train_per_class=4, val_per_class=2, workers=0, progress=False, tensorboard=False,
                      cutmix_alpha=0.0, bn_recalibration=2)
    result = fit(cfg)
    assert result.history[0]["step"] == len(result.history) * (len(select(shard_index(shards), "train", 0.1, 4)) // 32)
    assert 0 <= result.final_top1 <= 100 and (tmp_path / "final.safetensors").is_file()
