"""Image-folder data: splits, per-class subsets, augmentation presets, loaders skipping corrupt images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import datasets
from torchvision.transforms import v2

from .shards import ShardDataset, is_shards, shard_index

log = logging.getLogger("carve.train")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SMALL_IMAGE_MAX = 64  # at or below this size, presets pad-and-crop instead of random-resized-crop
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def find_split(root: str | Path, names: Sequence[str]) -> Path:
    """The first existing ``root/<name>`` directory; a clear error when none exists."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data: directory not found: {root} (expected an image-folder root with "
                                f"{'/'.join(names)} subfolders, e.g. ../shared/data/cifar10)")
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"data: {root} has none of the subfolders {list(names)} (expected <split>/<class>/*.jpg)")


def class_names(root: str | Path) -> list[str]:
    """The dataset's classes: the folder names of ``root/train`` (sorted), or a shard set's class list."""
    if is_shards(root):
        return list(shard_index(root).classes)
    return datasets.folder.find_classes(str(find_split(root, ["train"])))[0]


class SafeImageFolder(datasets.ImageFolder):
    """``ImageFolder`` that optionally keeps the first ``per_class`` images of each class and returns
    ``None`` for an image that cannot be decoded (dropped by ``collate_skipping``, which reports it).

    ``classes``: the class list labels index into (e.g. the training split's), so that a split
    lacking some classes keeps the same numbering; a class folder not in it is an error naming it.
    """

    def __init__(self, root: str | Path, transform: Callable | None = None, per_class: int = 0,
                 classes: Sequence[str] | None = None):
        self.given_classes = list(classes) if classes is not None else None
        super().__init__(str(root), transform=transform, allow_empty=classes is not None)
        if per_class:
            kept, seen = [], {}
            for path, target in self.samples:
                if seen.get(target, 0) < per_class:
                    kept.append((path, target))
                    seen[target] = seen.get(target, 0) + 1
            self.samples = kept
            self.imgs = kept
            self.targets = [t for _, t in kept]

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        found, class_to_idx = super().find_classes(directory)
        if self.given_classes is None:
            return found, class_to_idx
        unknown = sorted(set(found) - set(self.given_classes))
        if unknown:
            raise ValueError(f"data: {directory} has class folders that are not among the {len(self.given_classes)} "
                             f"training classes: {unknown} (labels would not match the model's outputs)")
        return list(self.given_classes), {c: i for i, c in enumerate(self.given_classes)}

    def __getitem__(self, index: int) -> Any:
        path, target = self.samples[index]
        try:
            image = self.loader(path)
        except _DECODE_ERRORS:
            return None, path
        if self.transform is not None:
            image = self.transform(image)
        return image, target


def collate_skipping(batch: list[tuple[Any, Any]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the decodable samples; return (images, targets, paths of the skipped ones)."""
    good = [(x, y) for x, y in batch if x is not None]
    skipped = [str(y) for x, y in batch if x is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([x for x, _ in good])
    targets = torch.tensor([y for _, y in good], dtype=torch.long)
    return images, targets, skipped


class SkipCounter:
    """Distinct corrupt files seen so far; ``add`` logs the new ones by name."""

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def add(self, paths: Sequence[str]) -> None:
        new = sorted(set(paths) - self.paths)
        if new:
            self.paths.update(new)
            log.warning("skipped %d corrupt image(s) (%d so far): %s", len(new), len(self.paths), ", ".join(new))

    @property
    def count(self) -> int:
        return len(self.paths)


def build_transforms(aug: str, img_size: int, train: bool, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Augmentation presets ``none``/``weak``/``medium``/``strong`` (train) or the eval transform.

    Small images (<= 64 px) use reflect-pad random crops, larger ones random-resized crops;
    ``medium`` adds TrivialAugment, ``strong`` RandAugment and random erasing.
    """
    small = img_size <= SMALL_IMAGE_MAX
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    if not train or aug == "none":
        size = img_size if small else int(round(img_size / 0.875))
        return v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(img_size), *tail])
    if small:
        ops: list[Any] = [v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size),
                          v2.RandomCrop(img_size, padding=img_size // 8, padding_mode="reflect")]
    else:
        scale = (0.35, 1.0) if aug == "weak" else (0.08, 1.0)
        ops = [v2.RandomResizedCrop(img_size, scale=scale, antialias=True)]
    ops.append(v2.RandomHorizontalFlip())
    if aug == "medium":
        ops.append(v2.TrivialAugmentWide())
    elif aug == "strong":
        ops.append(v2.RandAugment(num_ops=2, magnitude=9))
    ops.extend(tail)
    if aug == "strong":
        ops.append(v2.RandomErasing(p=0.25))
    return v2.Compose(ops)


def train_loader(root: str | Path, img_size: int, batch_size: int, aug: str = "weak", per_class: int = 0,
                 workers: int = 2, seed: int = 0, rank: int = 0, world_size: int = 1,
                 val_fraction: float = 0.1) -> DataLoader:
    """Shuffled, drop-last loader over ``root/train`` (or a shard set's training part) split over DDP
    processes; call ``set_epoch(loader, e)`` each epoch."""
    transform = build_transforms(aug, img_size, True)
    if is_shards(root):
        shards = ShardDataset(root, "train", transform, per_class, val_fraction, shuffle=True, seed=seed,
                              batch_size=batch_size, workers=workers, rank=rank, world_size=world_size)
        return DataLoader(shards, batch_size=batch_size, num_workers=workers, drop_last=True,
                          collate_fn=collate_skipping)
    dataset = SafeImageFolder(find_split(root, ["train"]), transform, per_class)
    if len(dataset) < batch_size * world_size:
        raise ValueError(f"data: {root}/train has {len(dataset)} images, fewer than one global batch "
                         f"({batch_size} x {world_size} processes)")
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                      collate_fn=collate_skipping, generator=torch.Generator(), persistent_workers=False)


def set_epoch(loader: DataLoader, epoch: int, seed: int = 0) -> None:
    """Make the shuffle order and the worker seeds a function of (seed, epoch) only (exact resume)."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if isinstance(loader.dataset, ShardDataset):
        loader.dataset.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 100_003 + epoch)


class _Shard(Dataset):
    def __init__(self, dataset: Dataset, rank: int, world_size: int):
        self.dataset, self.indices = dataset, list(range(rank, len(dataset), world_size))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def eval_loader(root: str | Path, img_size: int, batch_size: int, per_class: int = 0, workers: int = 2,
                rank: int = 0, world_size: int = 1, split: Sequence[str] = ("val", "test"),
                val_fraction: float = 0.1, classes: Sequence[str] | None = None) -> DataLoader:
    """Sequential loader over ``root/val`` (or ``root/test``; a shard set's held-out part, or its
    training part for ``split=("train",)``); each rank gets a disjoint part, no padding.

    Labels index into ``classes`` (default: the training split's when ``root/train`` exists, else
    the split's own folders), so every split of a dataset numbers its classes alike."""
    transform = build_transforms("none", img_size, False)
    if is_shards(root):
        part = "train" if tuple(split) == ("train",) else "val"
        shards = ShardDataset(root, part, transform, per_class, val_fraction, workers=workers, rank=rank,
                              world_size=world_size)
        return DataLoader(shards, batch_size=batch_size, num_workers=workers, collate_fn=collate_skipping)
    if classes is None and (Path(root) / "train").is_dir():
        classes = class_names(root)
    dataset: Dataset = SafeImageFolder(find_split(root, split), transform, per_class, classes)
    if world_size > 1:
        dataset = _Shard(dataset, rank, world_size)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate_skipping)


def classes_of(loader: DataLoader) -> list[str]:
    """The class names of the dataset behind ``loader`` (all of them, not only those it yields)."""
    dataset = loader.dataset
    while isinstance(dataset, _Shard):
        dataset = dataset.dataset
    return list(dataset.classes)  # type: ignore[attr-defined]
