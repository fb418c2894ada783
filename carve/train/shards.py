"""Classification data as WebDataset tar shards, streamed: an index by key, a held-out split by key,
and an iterable dataset that every process and loader worker reads its own part of.

A shard set is a folder of ``.tar``/``.tar.gz`` files or a brace pattern (``train-{0000..0030}.tar.gz``);
each sample is ``KEY.jpg`` (or ``.jpeg``/``.png``/``.webp``) and ``KEY.cls`` (the class index as
ASCII digits), as the WebDataset layout and ImageNet's public shards have them. Class names come
from ``classes.txt`` beside the shards (``name[<TAB>description]`` per line, in index order) when
there is one. The held-out split is a fixed function of each key, so it does not move with the
training seed. A small selection (the held-out split, a few images per class) is copied once into
an uncompressed shard in carve's cache folder and read from there, instead of scanning every shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
SUBSET_CACHE_SHARE = 0.25  # a selection this small (held-out split, per-class subset) is cached as one shard
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def is_shards(data: str | Path) -> bool:
    """True when ``data`` names tar shards (a brace pattern, a tar file, or a folder of them without ``train/``)."""
    text = str(data)
    if "{" in text or text.endswith(SHARD_SUFFIXES):
        return True
    path = Path(text)
    return path.is_dir() and not (path / "train").is_dir() and any(_shard_files(path))


def _shard_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(SHARD_SUFFIXES))


def shard_urls(data: str | Path) -> list[str]:
    """The shard files of a folder (sorted) or a brace pattern; a clear error when there are none."""
    text = str(data)
    if Path(text).is_dir():
        urls = [str(p) for p in _shard_files(Path(text))]
    else:
        import braceexpand

        urls = list(braceexpand.braceexpand(text))
    missing = [u for u in urls if not Path(u).is_file()]
    if not urls or missing:
        raise FileNotFoundError(f"data: {text}: " + (f"shard file(s) not found: {missing[:3]}" if missing else
                                "no .tar/.tar.gz shards there (expected a folder of shards or a brace pattern "
                                "such as train-{0000..0030}.tar.gz)"))
    return urls


@dataclass(frozen=True)
class ShardIndex:
    """Every sample's key and class, shard by shard, and the class names."""

    urls: tuple[str, ...]
    samples: tuple[tuple[tuple[str, int], ...], ...]  # per shard: (key, class index)
    classes: tuple[str, ...]
    digest: str = ""  # identity of the shard files (names, sizes, times)

    def __len__(self) -> int:
        return sum(len(s) for s in self.samples)


def held_out(key: str, fraction: float) -> bool:
    """Whether sample ``key`` belongs to the held-out split (a fixed hash of the key, no seed)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) < fraction * 16**8


def shard_index(data: str | Path) -> ShardIndex:
    """Keys and classes of every shard (read once, then cached in memory and in carve's cache folder)."""
    urls = tuple(shard_urls(data))
    stamp = tuple((u, os.stat(u).st_size, os.stat(u).st_mtime_ns) for u in urls)
    return _index(urls, stamp)


@lru_cache(maxsize=8)
def _index(urls: tuple[str, ...], stamp: tuple) -> ShardIndex:
    from carve.files import cache_dir, write_json

    digest = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
    cached = cache_dir() / "shards" / f"{digest}.json"
    if cached.is_file():
        data = json.loads(cached.read_text())
        samples = tuple(tuple((k, int(c)) for k, c in shard) for shard in data["samples"])
    else:
        samples = tuple(tuple(_scan(url)) for url in urls)
        write_json(cached, dict(urls=list(urls), samples=[list(map(list, s)) for s in samples]))
    n_classes = 1 + max((c for shard in samples for _, c in shard), default=-1)
    return ShardIndex(urls, samples, _class_names(urls, n_classes), digest)


def _scan(url: str) -> Iterator[tuple[str, int]]:
    import webdataset as wds

    for sample in wds.tarfile_samples([dict(url=url)], select_files=lambda name: name.endswith(".cls")):
        try:
            yield sample["__key__"], int(sample["cls"])
        except (KeyError, ValueError):
            raise ValueError(f"{url}: sample {sample.get('__key__')!r} has no integer .cls class index") from None


def _class_names(urls: Sequence[str], n_classes: int) -> tuple[str, ...]:
    listing = Path(urls[0]).parent / "classes.txt"
    if listing.is_file():
        names = [line.split("\t")[0].strip() for line in listing.read_text().splitlines() if line.strip()]
        if len(names) < n_classes:
            raise ValueError(f"{listing}: names {len(names)} classes, the shards use {n_classes}")
        return tuple(names)
    return tuple(f"class_{i}" for i in range(n_classes))


def subset_shard(index: ShardIndex, keys: frozenset[str]) -> str:
    """One uncompressed shard in carve's cache folder holding just the samples ``keys`` (written on
    first use): a held-out split or a per-class subset is read from it instead of from every shard."""
    import webdataset as wds

    from carve.files import cache_dir

    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    path = cache_dir() / "shards" / f"{index.digest}-subset-{digest}.tar"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with wds.TarWriter(str(tmp)) as sink:
            for sample in wds.tarfile_samples([dict(url=u) for u in index.urls]):
                if sample["__key__"] in keys:
                    kept = {k: v for k, v in sample.items() if k in ("__key__", "cls", *IMAGE_EXTENSIONS)}
                    sink.write(dict(kept, src=sample["__url__"].encode()))
        os.replace(tmp, path)
    return str(path)


def select(index: ShardIndex, split: str, val_fraction: float, per_class: int = 0) -> frozenset[str]:
    """The keys of ``split`` (``train`` or ``val``), the first ``per_class`` of each class (in key order) if set."""
    want_val = split == "val"
    keys = sorted((k, c) for shard in index.samples for k, c in shard if held_out(k, val_fraction) == want_val)
    if per_class:
        seen: dict[int, int] = {}
        kept = []
        for k, c in keys:
            if seen.get(c, 0) < per_class:
                kept.append((k, c))
                seen[c] = seen.get(c, 0) + 1
        keys = kept
    return frozenset(k for k, _ in keys)


class ShardDataset(IterableDataset):
    """One split of a shard set, streamed.

    Training (``shuffle=True``): each epoch shuffles the shard order and, through a buffer, the
    samples, as functions of (seed, epoch, process, worker) only; every process and worker yields
    the same number of samples (a multiple of ``batch_size``), so DDP ranks stay in step and
    ``len(loader)`` is exact. Evaluation: every sample once, in shard order, split over processes.
    A sample that cannot be decoded is yielded as ``(None, key)`` (``collate_skipping`` drops and reports it).
    """

    def __init__(self, data: str | Path, split: str, transform: Callable | None = None, per_class: int = 0,
                 val_fraction: float = 0.1, shuffle: bool = False, seed: int = 0, batch_size: int = 1,
                 workers: int = 0, rank: int = 0, world_size: int = 1, limit: int = 0, buffer: int = 1000):
        self.index = shard_index(data)
        self.keys = select(self.index, split, val_fraction, per_class)
        small = len(self.keys) <= SUBSET_CACHE_SHARE * len(self.index)
        self.urls = [subset_shard(self.index, self.keys)] if small else list(self.index.urls)
        if not self.keys:
            raise ValueError(f"data: {data}: the {split!r} split holds no sample (val_fraction {val_fraction})")
        self.classes = list(self.index.classes)
        self.transform, self.shuffle, self.seed, self.buffer = transform, shuffle, seed, buffer
        self.rank, self.world_size, self.streams_per_rank = rank, world_size, max(1, workers)
        self.epoch = 0
        per_rank = -(-min(len(self.keys), limit or len(self.keys)) // world_size)
        if shuffle:
            per_stream = per_rank // (self.streams_per_rank * batch_size) * batch_size
            if per_stream == 0:
                raise ValueError(f"data: {data}: {len(self.keys)} {split} samples are fewer than one batch of "
                                 f"{batch_size} for each of {world_size} process(es) x {self.streams_per_rank} worker(s)")
            self.quota = per_stream
        else:
            self.quota = 0
        self.length = self.quota * self.streams_per_rank if shuffle else per_rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.shuffle:
            yield from self._train_stream(self.rank * workers + worker, self.world_size * workers)
        else:
            yield from self._eval_stream(worker, workers)

    def _train_stream(self, stream: int, streams: int) -> Iterator[tuple[Any, Any]]:
        rng = random.Random(f"{self.seed}/{self.epoch}/{stream}")
        order = list(self.urls)
        random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        if len(order) >= streams:  # each stream its own shards, then the others' until its quota is met
            own = order[stream::streams]
            rest = [u for u in order if u not in own]
            turn = stream % max(len(rest), 1)
            samples = self._read(own + rest[turn:] + rest[:turn])
        else:  # fewer shards than streams: every stream reads them all and keeps every streams-th sample
            samples = (s for i, s in enumerate(self._read(order)) if i % streams == stream)
        buffer: list[tuple[bytes | None, int, str]] = []
        emitted = 0
        for sample in samples:
            buffer.append(sample)
            if len(buffer) < self.buffer:
                continue
            yield self._decode(*buffer.pop(rng.randrange(len(buffer))))
            emitted += 1
            if emitted == self.quota:
                return
        rng.shuffle(buffer)
        for sample in buffer[: self.quota - emitted]:
            yield self._decode(*sample)

    def _eval_stream(self, worker: int, workers: int) -> Iterator[tuple[Any, Any]]:
        count = 0
        for sample in self._read(self.urls[worker::workers]):
            if count // self.world_size >= self.length:
                return
            if count % self.world_size == self.rank:
                yield self._decode(*sample)
            count += 1

    def _read(self, urls: Sequence[str]) -> Iterator[tuple[bytes, int, str]]:
        import webdataset as wds

        for sample in wds.tarfile_samples([dict(url=u) for u in urls]):
            key = sample["__key__"]
            if key not in self.keys:
                continue
            image = next((sample[e] for e in IMAGE_EXTENSIONS if e in sample), None)
            origin = sample["src"].decode() if "src" in sample else sample["__url__"]
            yield image, int(sample["cls"]), f"{origin}:{key}"

    def _decode(self, data: bytes | None, target: int, name: str) -> tuple[Any, Any]:
        if data is None:
            return None, name
        try:
            image = Image.open(io.BytesIO(data)).convert("RGB")
        except _DECODE_ERRORS:
            return None, name
        return (self.transform(image) if self.transform is not None else image), target
