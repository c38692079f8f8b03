"""ImageNet-style folders (``train|val/<class>/*.JPEG``) through torchvision's ImageFolder, and
the class-balanced search sample drawn from one listing.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from harness.data.errors import DatasetError


IMAGENET_LAYOUT = "{train,val}/<class>/*.JPEG (one sub-folder per class, e.g. n01440764)"


def _rgb_loader(path: str) -> Image.Image:
    """ImageFolder's PIL loader (converts L/CMYK/RGBA/P to RGB) with one clear error per bad file."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")  # convert() forces the decode while the file is open
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot decode image {path} ({type(e).__name__}: {e}); expected a "
                           "readable JPEG/PNG image") from None


def class_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _has_image(folder: Path) -> bool:
    for dirpath, _dirs, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMG_EXTENSIONS) for f in files):
            return True
    return False


def split_classes(root: str | os.PathLike, split: str) -> tuple[Path, list[str]]:
    """(root/split, its class folder names) without listing any image; a missing root or
    split, or a split without class folders, is one DatasetError."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"ImageNet-style data set not found at {root}: expected {root}/{IMAGENET_LAYOUT}")
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"split folder missing: {split_dir} (expected {root}/{IMAGENET_LAYOUT})")
    classes = class_dirs(split_dir)
    if not classes:
        raise DatasetError(f"no class folders in {split_dir}: expected {split_dir}/<class>/*.JPEG, "
                           "one sub-folder per class")
    return split_dir, classes


def imagenet_folder(root: str | os.PathLike, split: str,
                    transform: Callable[[Image.Image], Any] | None = None) -> ImageFolder:
    """Load ``root/<split>/<class>/*`` with torchvision's ImageFolder, validating the layout.

    Raises DatasetError for a missing root or split folder, a split without class folders,
    class folders without images, and (when both exist) val classes differing from train
    classes, since the class index of a val image must mean the same as in training.
    Undecodable images raise DatasetError naming the file when they are read.
    """
    root = Path(root)
    split_dir, classes = split_classes(root, split)
    other = root / ("val" if split == "train" else "train")
    if split in ("train", "val") and other.is_dir():
        other_classes = class_dirs(other)
        if other_classes and other_classes != classes:
            only_here = sorted(set(classes) - set(other_classes))[:5]
            only_there = sorted(set(other_classes) - set(classes))[:5]
            raise DatasetError(
                f"class folders of {split_dir} and {other} differ (only in {split}: {only_here}, only in "
                f"{other.name}: {only_there}): expected the same set of classes in train and val")
    try:
        return ImageFolder(str(split_dir), transform=transform, loader=_rgb_loader)
    except FileNotFoundError:
        empty = [c for c in classes if not _has_image(split_dir / c)]
        shown = ", ".join(str(split_dir / c) for c in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise DatasetError(f"class folders without images: {shown} (expected image files with one of the "
                           f"extensions {', '.join(IMG_EXTENSIONS)})") from None


@dataclass(frozen=True)
class SampleSpec:
    """A class-balanced search sample (PC-DARTS on ImageNet: 10 % of every class for the
    weights, 2.5 % for the architecture), drawn with its own ``seed``."""
    weights: float = 0.1
    arch: float = 0.025
    seed: int = 0


def class_balanced_sample(targets: Sequence[int], class_names: Sequence[str], spec: SampleSpec,
                          where: str) -> tuple[list[int], list[int]]:
    """Per class, ``floor(fraction * images)`` of its images for the weights and as many for the
    architecture, disjoint, drawn by a permutation seeded with ``spec.seed`` (the same listing
    and seed give the same sample). Returns (weight indices, architecture indices), each sorted.
    ``where`` names the folder in errors; a fraction that leaves some class without an image,
    or fractions adding up to more than the folder, is one DatasetError."""
    if spec.weights + spec.arch > 1.0:
        raise DatasetError(f"search.sample: weights {spec.weights:g} + arch {spec.arch:g} = "
                           f"{spec.weights + spec.arch:g}: a sample larger than the folder "
                           f"{where}; expected fractions adding up to at most 1")
    targets = np.asarray(targets)
    counts = np.bincount(targets, minlength=len(class_names))
    rng = np.random.default_rng(spec.seed)
    # each class's indices in ascending order, from one stable sort (not a scan per class)
    by_class = np.split(np.argsort(targets, kind="stable"), np.cumsum(counts)[:-1])
    w_idx: list[np.ndarray] = []
    a_idx: list[np.ndarray] = []
    for c, name in enumerate(class_names):
        n_w, n_a = int(spec.weights * counts[c]), int(spec.arch * counts[c])
        if n_w == 0 or n_a == 0:
            which = "weights" if n_w == 0 else "arch"
            raise DatasetError(
                f"search.sample.{which} = {getattr(spec, which):g} of the {counts[c]} images in "
                f"{where}/{name} is less than one image: expected a fraction that leaves every "
                "class at least one image for the weights and one for the architecture")
        members = by_class[c][rng.permutation(int(counts[c]))]
        w_idx.append(members[:n_w])
        a_idx.append(members[n_w:n_w + n_a])
    return sorted(np.concatenate(w_idx).tolist()), sorted(np.concatenate(a_idx).tolist())
