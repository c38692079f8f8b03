"""Data sets and loaders for search and retraining (CIFAR-10 pickles, ImageNet-style folders).

The smoke profile generates its own data *in the real on-disk formats* (``generate_cifar_like``,
``generate_imagenet_like``) and reads it through the same loaders as the paper profile, so the
real loaders are exercised on every run. Every problem with a data set on disk is reported as
one :class:`DatasetError` that names the file or folder and the expected layout.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from backbones.atomic import atomic_write_bytes, atomic_write_text, read_failure

__all__ = [
    "DatasetError",
    "CIFAR10Pickle",
    "CIFAR_DIRNAME",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Cutout",
    "DataConfig",
    "build_dataset",
    "build_search_loaders",
    "build_train_loaders",
    "cifar_transforms",
    "generate_cifar_like",
    "generate_imagenet_like",
    "imagenet_folder",
    "imagenet_transforms",
    "infer_num_classes",
]

CIFAR_DIRNAME = "cifar-10-batches-py"
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_CIFAR_META_FILE = "batches.meta"
_CIFAR_ROW = 3 * 32 * 32
_CIFAR_LAYOUT = (
    f"{CIFAR_DIRNAME}/{{data_batch_1..5,test_batch,batches.meta}} "
    "(the python pickle layout of https://www.cs.toronto.edu/~kriz/cifar.html)"
)
_IMAGENET_LAYOUT = "{train,val}/<class>/*.JPEG (one sub-folder per class, e.g. n01440764)"

# DARTS' CIFAR-10 statistics (the search/retrain code of DARTS, PC-DARTS and CP-NAS use them).
CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    """A data set is missing or malformed; the message names the path and the expected layout."""


# --------------------------------------------------------------------------------------------
# Safe unpickling
# --------------------------------------------------------------------------------------------

# Pickle can call any importable function, so a downloaded "data set" could run code. CIFAR
# pickles need only numpy array reconstruction (py2 files name numpy.core, numpy>=2 writes
# numpy._core), _codecs.encode (how protocol 2 stores bytes from Python 3) and plain builtins.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_SAFE_BUILTINS = {
    "list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray",
    "str", "int", "float", "complex", "bool",
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/dtype reconstruction and harmless builtins."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 module names (e.g. __builtin__), mapped as pickle's fix_imports does.
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _NUMPY_GLOBALS:
            import numpy._core.multiarray as multiarray  # avoid numpy.core deprecation warnings

            return {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar,
                    "ndarray": np.ndarray, "dtype": np.dtype}[name]
        if module == "_codecs" and name == "encode":
            import _codecs

            return _codecs.encode
        if module == "builtins" and name in _SAFE_BUILTINS:
            import builtins

            return getattr(builtins, name)
        raise _ForbiddenGlobal(f"{module}.{name}")


def _load_pickle(path: Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler, turning every failure into DatasetError."""
    if not path.is_file():
        raise DatasetError(f"CIFAR-10 file missing: {path} (expected the file of the layout {_CIFAR_LAYOUT})")
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="bytes").load()
    except OSError as e:   # vanished or unreadable between the check and the read
        raise read_failure(e, path) from None
    except _ForbiddenGlobal as e:
        raise DatasetError(
            f"{path}: refusing to unpickle the global {e} (expected a CIFAR pickle holding only "
            "numpy arrays, lists, ints and bytes)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, UnicodeDecodeError, ImportError) as e:
        raise DatasetError(
            f"{path}: truncated or not a CIFAR pickle ({type(e).__name__}: {e}); expected a pickled "
            "dict as in the layout " + _CIFAR_LAYOUT
        ) from None


def _get(d: dict, key: str) -> Any:
    """Look up ``key`` as bytes (py2 pickles / official files) or str (re-pickled files)."""
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


# --------------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------------


#: left in a generated CIFAR folder while ``generate_cifar_like`` writes it
INCOMPLETE_MARKER = ".incomplete"


def _cifar_dir(root: str | os.PathLike) -> Path:
    """Accept the folder holding ``cifar-10-batches-py`` or that folder itself."""
    folder = _find_cifar_dir(root)
    if (folder / INCOMPLETE_MARKER).exists():
        raise DatasetError(f"{folder} is incomplete: its generation was stopped before it "
                           f"finished; run `harness prepare` again")
    return folder


def _find_cifar_dir(root: str | os.PathLike) -> Path:
    root = Path(root)
    if (root / CIFAR_DIRNAME).is_dir():
        return root / CIFAR_DIRNAME
    if root.is_dir() and (root.name == CIFAR_DIRNAME or (root / _CIFAR_META_FILE).exists()):
        return root
    raise DatasetError(
        f"CIFAR-10 data set not found at {root}: expected {root}/{_CIFAR_LAYOUT}"
    )


def _read_cifar_meta(folder: Path) -> list[str]:
    path = folder / _CIFAR_META_FILE
    meta = _load_pickle(path)
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or not names:
        raise DatasetError(f"{path}: expected a dict with a non-empty list under b'label_names'")
    return [n.decode("utf-8", "replace") if isinstance(n, (bytes, bytearray)) else str(n) for n in names]


def _read_cifar_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file; returns images N×32×32×3 uint8 (HWC) and int64 labels."""
    batch = _load_pickle(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict with keys b'data' and b'labels', got {type(batch).__name__}")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
        raise DatasetError(f"{path}: expected keys b'data' and b'labels', found {keys}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_ROW:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: expected b'data' to be a uint8 array of shape (N, {_CIFAR_ROW}) "
                           f"(channel-major RGB 32x32 rows), got {desc}")
    try:
        labels_arr = np.asarray(labels)
    except (ValueError, TypeError):
        labels_arr = np.asarray([], dtype=object)
    if labels_arr.ndim != 1 or (labels_arr.size and labels_arr.dtype.kind not in "iu"):
        raise DatasetError(f"{path}: expected b'labels' to be a list of ints")
    if len(labels_arr) != len(data):
        raise DatasetError(f"{path}: expected one label per data row, got {len(labels_arr)} labels for {len(data)} rows")
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() >= num_classes):
        raise DatasetError(f"{path}: expected labels in [0, {num_classes}) (the number of label_names in "
                           f"{_CIFAR_META_FILE}), got range [{labels_arr.min()}, {labels_arr.max()}]")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels_arr.astype(np.int64)


class CIFAR10Pickle(Dataset):
    """CIFAR-10 in the ``cifar-10-batches-py`` pickle layout, read with a restricted unpickler.

    Not ``torchvision.datasets.CIFAR10``: that class checks the md5 of the official files, so it
    rejects the real CIFAR-10 subset used for checks (``/work/shared/data/cifar10-subset``) and
    the generated smoke set, and it unpickles with the unrestricted ``pickle.load``.

    ``root`` is the folder containing ``cifar-10-batches-py`` or that folder itself. Items are
    ``(PIL image, label)`` like torchvision's, or ``(transform(image), label)``. ``data`` holds
    the images as an N×32×32×3 uint8 array and ``targets`` the labels (list of int).
    """

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        self.folder = _cifar_dir(root)
        self.train = train
        self.transform = transform
        self.classes = _read_cifar_meta(self.folder)
        files = _CIFAR_TRAIN_FILES if train else (_CIFAR_TEST_FILE,)
        # Check every file exists first so that the error names the first missing one.
        for name in files:
            if not (self.folder / name).is_file():
                raise DatasetError(f"CIFAR-10 file missing: {self.folder / name} "
                                   f"(expected {self.folder}/{{data_batch_1..5,test_batch,batches.meta}})")
        parts = [_read_cifar_batch(self.folder / name, len(self.classes)) for name in files]
        self.data = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        self.targets: list[int] = np.concatenate([p[1] for p in parts]).tolist()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self.data[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]


# --------------------------------------------------------------------------------------------
# ImageNet-style folders
# --------------------------------------------------------------------------------------------


def _rgb_loader(path: str) -> Image.Image:
    """ImageFolder's PIL loader (converts L/CMYK/RGBA/P to RGB) with one clear error per bad file."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")  # convert() forces the decode while the file is open
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot decode image {path} ({type(e).__name__}: {e}); expected a "
                           "readable JPEG/PNG image") from None


def _class_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _has_image(folder: Path) -> bool:
    for dirpath, _dirs, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMG_EXTENSIONS) for f in files):
            return True
    return False


def imagenet_folder(root: str | os.PathLike, split: str,
                    transform: Callable[[Image.Image], Any] | None = None) -> ImageFolder:
    """Load ``root/<split>/<class>/*`` with torchvision's ImageFolder, validating the layout.

    Raises DatasetError for a missing root or split folder, a split without class folders,
    class folders without images, and (when both exist) val classes differing from train
    classes, since the class index of a val image must mean the same as in training.
    Undecodable images raise DatasetError naming the file when they are read.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"ImageNet-style data set not found at {root}: expected {root}/{_IMAGENET_LAYOUT}")
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"split folder missing: {split_dir} (expected {root}/{_IMAGENET_LAYOUT})")
    classes = _class_dirs(split_dir)
    if not classes:
        raise DatasetError(f"no class folders in {split_dir}: expected {split_dir}/<class>/*.JPEG, "
                           "one sub-folder per class")
    other = root / ("val" if split == "train" else "train")
    if split in ("train", "val") and other.is_dir():
        other_classes = _class_dirs(other)
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


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------


class Cutout:
    """DARTS' Cutout on a CHW tensor: zero one ``length``×``length`` square (clipped at the border).

    Uses torch's RNG (not numpy's, as DARTS did) so DataLoader workers get distinct, seeded masks.
    """

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        y1, y2 = max(0, y - half), min(h, y + half)
        x1, x2 = max(0, x - half), min(w, x + half)
        img = img.clone()
        img[..., y1:y2, x1:x2] = 0.0
        return img

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


def cifar_transforms(train: bool, cutout: int = 0) -> T.Compose:
    """DARTS CIFAR transforms: crop 32 pad 4 + flip for training, normalize, optional cutout."""
    ops: list[Callable] = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    ops += [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    if train and cutout > 0:
        ops.append(Cutout(cutout))
    return T.Compose(ops)


class Lighting:
    """AlexNet-style PCA lighting noise (Krizhevsky et al. 2012), as in the official DCP-NAS
    retraining (``Lighting(0.1)``): adds ``eigvec @ (alpha * eigval)`` to every pixel, with
    alpha ~ N(0, alphastd) per image and channel; on a [0, 1] tensor, before normalisation.
    torchvision has no such transform."""

    EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
    EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009],
                           [-0.5808, -0.0045, -0.8140],
                           [-0.5836, -0.6948, 0.4203]])

    def __init__(self, alphastd: float) -> None:
        self.alphastd = alphastd

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.alphastd == 0:
            return img
        alpha = torch.randn(3) * self.alphastd
        rgb = (self.EIGVEC * (alpha * self.EIGVAL).view(1, 3)).sum(dim=1)
        return img + rgb.view(3, 1, 1)

    def __repr__(self) -> str:
        return f"Lighting(alphastd={self.alphastd})"


def imagenet_transforms(train: bool, size: int, lighting: float = 0.0) -> T.Compose:
    """ImageNet transforms: RandomResizedCrop + flip (+ Lighting) for training,
    Resize(size*8/7) + CenterCrop for eval."""
    if train:
        ops: list[Callable] = [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor()]
        if lighting > 0:
            ops.append(Lighting(lighting))
    else:
        ops = [T.Resize(size * 8 // 7), T.CenterCrop(size), T.ToTensor()]
    return T.Compose(ops + [T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# --------------------------------------------------------------------------------------------
# Loader factory
# --------------------------------------------------------------------------------------------


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
        return len(_read_cifar_meta(_cifar_dir(cfg.root)))
    train = Path(cfg.root) / "train"
    if not train.is_dir():
        raise DatasetError(f"split folder missing: {train} (expected {cfg.root}/{_IMAGENET_LAYOUT})")
    classes = _class_dirs(train)
    if not classes:
        raise DatasetError(f"no class folders in {train}: expected {train}/<class>/*.JPEG, "
                           "one sub-folder per class")
    return len(classes)


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
        members = np.flatnonzero(targets == c)[rng.permutation(int(counts[c]))]
        w_idx.append(members[:n_w])
        a_idx.append(members[n_w:n_w + n_a])
    return sorted(np.concatenate(w_idx).tolist()), sorted(np.concatenate(a_idx).tolist())


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


# --------------------------------------------------------------------------------------------
# Synthetic smoke data in the real formats
# --------------------------------------------------------------------------------------------

_SHAPES = ("square", "disc", "bar", "cross")
_TINTS = {"red": (0.9, 0.15, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.3, 0.95),
          "yellow": (0.95, 0.85, 0.1), "magenta": (0.85, 0.1, 0.85)}
_ORIENTS = (0.0, 60.0, 120.0)  # stripe direction, degrees
_PERIODS = (4.0, 7.0, 3.0, 5.0, 6.0, 8.0, 9.0)  # stripe period in pixels at 32×32
# Pairwise coprime attribute counts (4, 5, 3, 7): class c -> (c%4, c%5, c%3, c%7) is unique for c < 420.
_MAX_CLASSES = len(_SHAPES) * len(_TINTS) * len(_ORIENTS) * len(_PERIODS)


def _class_attrs(c: int) -> tuple[int, int, int, int]:
    return c % len(_SHAPES), c % len(_TINTS), c % len(_ORIENTS), c % len(_PERIODS)


def _class_name(c: int) -> str:
    s, t, o, p = _class_attrs(c)
    return f"{list(_TINTS)[t]}_{_SHAPES[s]}_{int(_ORIENTS[o])}deg_p{int(_PERIODS[p])}"


def _check_classes(num_classes: int) -> None:
    if not 1 <= num_classes <= _MAX_CLASSES:
        raise ValueError(f"num_classes must be in [1, {_MAX_CLASSES}], got {num_classes}")


def _shape_mask(shape: np.ndarray, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean masks (B×H×W) of square / disc / bar / cross of half-size ``r`` centred at dx=dy=0."""
    ax, ay = np.abs(dx), np.abs(dy)
    thick = r / 3.0
    masks = np.stack([
        np.maximum(ax, ay) < r * 0.85,  # square
        dx * dx + dy * dy < r * r,  # disc
        (ax < r) & (ay < thick),  # bar
        ((ax < r) & (ay < thick)) | ((ay < r) & (ax < thick)),  # cross
    ])
    return np.take_along_axis(masks, shape[None, :, None, None], axis=0)[0]


def _render(labels: np.ndarray, size: int, rng: np.random.Generator, chunk: int = 512) -> np.ndarray:
    """Synthetic images N×size×size×3 uint8.

    The class sets the shape, tint, stripe direction and stripe period of a striped object; its
    position, scale, stripe phase, brightness and tint are jittered, and it lies on a random
    background colour with a plain distractor shape of random shape and tint, plus pixel noise.
    So colour statistics alone do not give the class: the model has to find the striped object.
    """
    n = len(labels)
    k = size / 32.0
    attrs = np.array([_class_attrs(int(c)) for c in labels], dtype=np.int64).reshape(n, 4)
    palette = np.array(list(_TINTS.values()))
    # All per-image parameters come from one stream, drawn up front: output independent of chunking.
    cx, cy = rng.uniform(10, 22, n) * k, rng.uniform(10, 22, n) * k
    r = rng.uniform(4.5, 9.5, n) * k
    phase = rng.uniform(0, 2 * np.pi, n)
    gain = rng.uniform(0.7, 1.1, n)
    tints = np.clip(palette[attrs[:, 1]] + rng.uniform(-0.15, 0.15, (n, 3)), 0, 1)
    theta = np.deg2rad(np.array(_ORIENTS)[attrs[:, 2]] + rng.uniform(-8, 8, n))
    period = np.array(_PERIODS)[attrs[:, 3]] * k
    bg = rng.uniform(0.0, 0.7, (n, 3))
    d_shape = rng.integers(0, len(_SHAPES), n)
    d_col = np.clip(palette[rng.integers(0, len(palette), n)] * rng.uniform(0.5, 1.0, (n, 1)), 0, 1)
    d_cx, d_cy = rng.uniform(3, 29, n) * k, rng.uniform(3, 29, n) * k
    d_r = rng.uniform(3.0, 6.0, n) * k
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        img = np.broadcast_to(bg[sl, None, None, :], (sl.stop - sl.start, size, size, 3))
        dmask = _shape_mask(d_shape[sl], xx[None] - d_cx[sl, None, None], yy[None] - d_cy[sl, None, None],
                            d_r[sl, None, None])
        img = np.where(dmask[..., None], d_col[sl, None, None, :], img)
        dx, dy = xx[None] - cx[sl, None, None], yy[None] - cy[sl, None, None]
        mask = _shape_mask(attrs[sl, 0], dx, dy, r[sl, None, None])
        th = theta[sl, None, None]
        u = dx * np.cos(th) + dy * np.sin(th)
        stripe = 0.5 + 0.5 * np.sin(2 * np.pi * u / period[sl, None, None] + phase[sl, None, None])
        fg = tints[sl, None, None, :] * (0.45 + 0.55 * stripe[..., None]) * gain[sl, None, None, None]
        img = np.where(mask[..., None], fg, img)
        img = img + rng.normal(0.0, 0.12, img.shape)
        out[sl] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return out


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes)


def _cifar_pickle_bytes(obj: dict) -> bytes:
    # Protocol 2, as the official files and the real subset: readable by every CIFAR reader.
    return pickle.dumps(obj, protocol=2)


def generate_cifar_like(root: Path, n_train: int = 5000, n_test: int = 1000, num_classes: int = 10,
                        seed: int = 0) -> Path:
    """Write a synthetic, learnable data set in the ``cifar-10-batches-py`` layout under ``root``.

    Each class is a distinct combination of shape, tint, stripe direction and period, drawn with
    random placement, background and noise, so a small CNN learns it in a few epochs but a
    colour histogram alone does not solve it. Byte-identical for the same arguments.
    Returns the ``cifar-10-batches-py`` folder.
    """
    _check_classes(num_classes)
    if n_train < 0 or n_test < 0:
        raise ValueError("n_train and n_test must be >= 0")
    folder = Path(root) / CIFAR_DIRNAME
    # the marker says "being written" until the last file is: a killed prepare leaves a folder
    # that no loader reads (``_cifar_dir``), instead of old and new batches side by side
    atomic_write_text(folder / INCOMPLETE_MARKER, "generation started; not finished\n")
    rng = np.random.default_rng(seed)
    train_labels = _balanced_labels(n_train, num_classes, rng)
    test_labels = _balanced_labels(n_test, num_classes, rng)
    train_imgs = _render(train_labels, 32, rng)
    test_imgs = _render(test_labels, 32, rng)

    def rows(imgs: np.ndarray) -> np.ndarray:  # HWC -> channel-major rows of 3072
        return np.ascontiguousarray(imgs.transpose(0, 3, 1, 2).reshape(len(imgs), _CIFAR_ROW))

    bounds = np.linspace(0, n_train, 6).astype(int)
    for i, name in enumerate(_CIFAR_TRAIN_FILES):
        a, b = bounds[i], bounds[i + 1]
        atomic_write_bytes(folder / name, _cifar_pickle_bytes({
            b"batch_label": f"training batch {i + 1} of 5 (synthetic, seed {seed})".encode(),
            b"labels": [int(x) for x in train_labels[a:b]],
            b"data": rows(train_imgs[a:b]),
            b"filenames": [f"synthetic_train_{j:06d}.png".encode() for j in range(a, b)],
        }))
    atomic_write_bytes(folder / _CIFAR_TEST_FILE, _cifar_pickle_bytes({
        b"batch_label": f"testing batch 1 of 1 (synthetic, seed {seed})".encode(),
        b"labels": [int(x) for x in test_labels],
        b"data": rows(test_imgs),
        b"filenames": [f"synthetic_test_{j:06d}.png".encode() for j in range(n_test)],
    }))
    atomic_write_bytes(folder / _CIFAR_META_FILE, _cifar_pickle_bytes({
        b"num_cases_per_batch": int(bounds[1] - bounds[0]),
        b"label_names": [_class_name(c).encode() for c in range(num_classes)],
        b"num_vis": _CIFAR_ROW,
    }))
    (folder / INCOMPLETE_MARKER).unlink()
    return folder


def generate_imagenet_like(root: Path, num_classes: int = 10, n_train_per_class: int = 20,
                           n_val_per_class: int = 5, size: int = 64, seed: int = 0) -> Path:
    """Write synthetic JPEGs as ``root/{train,val}/n%08d/*.JPEG`` (ImageNet synset-style names).

    Same class design as :func:`generate_cifar_like`, at ``size``×``size``. Deterministic for a
    seed (given the same libjpeg). Returns ``root``.
    """
    _check_classes(num_classes)
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", n_train_per_class), ("val", n_val_per_class)):
        labels = np.repeat(np.arange(num_classes), per_class)
        imgs = _render(labels, size, rng)
        for i, (c, img) in enumerate(zip(labels, imgs)):
            synset = f"n{int(c):08d}"
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            atomic_write_bytes(root / split / synset / f"{synset}_{split}_{i % per_class:05d}.JPEG", buf.getvalue())
    return root
