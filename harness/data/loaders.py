"""Loaders for search (the DARTS split or the class-balanced sample) and retraining, seeded
and distributed-aware.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import ImageFolder

from harness.data.cifar import CIFAR10Pickle, cifar_dir, read_cifar_meta
from harness.data.errors import DatasetError
from harness.data.imagenet import SampleSpec, class_balanced_sample, imagenet_folder, split_classes
from harness.data.transforms import cifar_transforms, imagenet_transforms


@dataclass
class DataConfig:
    """Which data set to load and how to batch it.

    ``train_subset`` / ``test_subset`` keep only the first N images (for quick runs); for
    ImageNet folders "first" is in class-interleaved order so a prefix covers every class.
    """

    name: str  # "cifar10" | "imagenet"
    root: str
    batch_size: int = 64
    num_workers: int = 0
    image_size: int = 32  # imagenet only
    cutout: int = 0
    lighting: float = 0.0  # imagenet only
    train_subset: int | None = None
    test_subset: int | None = None


_NAMES = ("cifar10", "imagenet")


def _check_name(cfg: DataConfig) -> None:
    if cfg.name not in _NAMES:
        raise DatasetError(f"unknown data set name {cfg.name!r} (data.name in params.yaml): "
                           f"expected one of {', '.join(_NAMES)}")


def build_dataset(cfg: DataConfig, train: bool, augment: bool | None = None) -> Dataset:
    """The training (``train=True``) or test/val set of ``cfg``, with standard transforms.

    ``augment`` defaults to ``train``. Returns CIFAR10Pickle or ImageFolder (not subset).
    """
    _check_name(cfg)
    augment = train if augment is None else augment
    if cfg.name == "cifar10":
        return CIFAR10Pickle(cfg.root, train=train, transform=cifar_transforms(augment, cfg.cutout))
    return imagenet_folder(cfg.root, "train" if train else "val", imagenet_transforms(augment, cfg.image_size,
                                                                       cfg.lighting))


def infer_num_classes(cfg: DataConfig) -> int:
    """Number of classes without loading images (CIFAR: label_names of the meta file; ImageNet:
    the class folders of train/, read without listing their images)."""
    _check_name(cfg)
    if cfg.name == "cifar10":
        return len(read_cifar_meta(cifar_dir(cfg.root)))
    return len(split_classes(cfg.root, "train")[1])


def _num_classes(ds: Dataset) -> int:
    return len(ds.classes)  # type: ignore[attr-defined]


def _ordered_indices(ds: Dataset) -> list[int]:
    """Order in which "first N" and the search split take images.

    CIFAR batches are already in random class order, so the file order is kept (DARTS).
    ImageFolder lists images class by class, so a prefix would hold only the first classes;
    interleave the classes round-robin instead (deterministic, no RNG).
    """
    if isinstance(ds, ImageFolder):
        targets = np.asarray(ds.targets)
        rank = np.empty(len(targets), dtype=np.int64)
        for c in np.unique(targets):
            idx = np.flatnonzero(targets == c)
            rank[idx] = np.arange(len(idx))
        return np.lexsort((targets, rank)).tolist()
    return list(range(len(ds)))  # type: ignore[arg-type]


def _prefix(indices: list[int], n: int | None, what: str) -> list[int]:
    if n is None:
        return indices
    if n <= 0:
        raise DatasetError(f"{what} must be positive, got {n} (data.{what} in params.yaml)")
    return indices[:n]


def _loader(ds: Dataset, indices: list[int], cfg: DataConfig, train: bool, seed: int,
            distributed: bool, what: str) -> DataLoader:
    """One DataLoader over ``ds[indices]``; training loaders shuffle (seeded) and drop the last batch."""
    subset = Subset(ds, indices)
    if train and len(indices) < cfg.batch_size * (dist.get_world_size() if distributed else 1):
        raise DatasetError(f"the {what} split has {len(indices)} images, fewer than one batch of "
                         f"{cfg.batch_size} per process: lower batch_size or raise the subset size")
    if not indices:
        raise DatasetError(f"the {what} set of {cfg.root} is empty (data.root / data."
                           f"{'train' if train else 'test'}_subset in params.yaml)")
    # shuffling and the workers' seeds: the loader draws the workers' base seed from this
    # generator when it makes an iterator, i.e. every epoch (no persistent workers), after
    # set_loader_epoch re-seeded it from (seed, epoch); each worker then seeds torch, numpy
    # and Python from base seed + worker id. So a resumed epoch gets the same worker seeds as
    # an uninterrupted one.
    generator = torch.Generator().manual_seed(seed)
    sampler: Any = None
    if distributed and train:
        sampler = DistributedSampler(subset, num_replicas=dist.get_world_size(), rank=dist.get_rank(),
                                     shuffle=True, seed=seed, drop_last=True)
    elif distributed:
        # evaluation: each image on exactly one rank (torch's DistributedSampler pads the set
        # with repeats, which would count some test images twice)
        from mmengine.dataset import DefaultSampler
        sampler = DefaultSampler(subset, shuffle=False, round_up=False)
    return DataLoader(
        subset,
        batch_size=cfg.batch_size,
        shuffle=train if sampler is None else False,
        sampler=sampler,
        generator=generator,
        num_workers=cfg.num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=train,  # batch norm must never see a batch of 1
        persistent_workers=False,   # see the generator above
    )


def build_search_loaders(cfg: DataConfig, train_portion: float = 0.5, seed: int = 0,
                         distributed: bool = False, sample: SampleSpec | None = None
                         ) -> tuple[DataLoader, DataLoader, int]:
    """DARTS search split: the first ``train_portion`` of the training set trains the weights,
    the rest the architecture; both use the training transform. Returns (train, val, num_classes).
    With ``sample`` (an ImageNet folder) the two parts are a class-balanced sample of the
    training folder instead (``class_balanced_sample``; ``train_subset`` does not apply), drawn
    from the one listing ImageFolder makes.

    Shuffling is seeded by ``seed`` (torch.Generator); with ``distributed`` each part gets a
    DistributedSampler (call ``loader.sampler.set_epoch(epoch)`` every epoch). Augmentation draws
    from torch's RNG: per worker seeded from the generator, or the global RNG when num_workers=0.
    """
    if not 0.0 < train_portion < 1.0:
        raise DatasetError(f"search.train_portion must be in (0, 1), got {train_portion}")
    ds = build_dataset(cfg, train=True)
    if sample is not None:
        if not isinstance(ds, ImageFolder):
            raise DatasetError(f"search.sample applies to an ImageNet-style folder (data.name "
                               f"imagenet), not to {cfg.name}: remove it or use train_portion")
        w_part, a_part = class_balanced_sample(ds.targets, ds.classes, sample,
                                               str(Path(cfg.root) / "train"))
    else:
        indices = _prefix(_ordered_indices(ds), cfg.train_subset, "train_subset")
        split = int(math.floor(train_portion * len(indices)))
        w_part, a_part = indices[:split], indices[split:]
    train = _loader(ds, w_part, cfg, True, seed, distributed, "search weight")
    val = _loader(ds, a_part, cfg, True, seed + 1, distributed, "search architecture")
    return train, val, _num_classes(ds)


def build_train_loaders(cfg: DataConfig, seed: int = 0,
                        distributed: bool = False) -> tuple[DataLoader, DataLoader, int]:
    """Retraining loaders: the augmented training set (shuffled, drop_last) and the test/val
    set (no augmentation, no shuffle). Returns (train, test, num_classes).

    With ``distributed`` the test set is split across ranks without padding (each image is
    evaluated once; ``backbones.evaluation.evaluate`` sums the counts over ranks).
    """
    train_ds = build_dataset(cfg, train=True)
    test_ds = build_dataset(cfg, train=False)
    train_idx = _prefix(_ordered_indices(train_ds), cfg.train_subset, "train_subset")
    test_idx = _prefix(_ordered_indices(test_ds), cfg.test_subset, "test_subset")
    train = _loader(train_ds, train_idx, cfg, True, seed, distributed, "training")
    test = _loader(test_ds, test_idx, cfg, False, seed, distributed, "test")
    return train, test, _num_classes(train_ds)
