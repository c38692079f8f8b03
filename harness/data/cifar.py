"""CIFAR-10 in its python pickle layout (``cifar-10-batches-py``).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from backbones.atomic import read_failure
from harness.data.errors import DatasetError
from harness.data.unpickle import ForbiddenGlobal, restricted_load


CIFAR_DIRNAME = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_META_FILE = "batches.meta"
CIFAR_ROW = 3 * 32 * 32
CIFAR_LAYOUT = (
    f"{CIFAR_DIRNAME}/{{data_batch_1..5,test_batch,batches.meta}} "
    "(the python pickle layout of https://www.cs.toronto.edu/~kriz/cifar.html)"
)

#: left in a generated CIFAR folder while ``generate_cifar_like`` writes it
INCOMPLETE_MARKER = ".incomplete"


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler, turning every failure into DatasetError."""
    if not path.is_file():
        raise DatasetError(f"CIFAR-10 file missing: {path} (expected the file of the layout {CIFAR_LAYOUT})")
    try:
        with open(path, "rb") as f:
            return restricted_load(f)
    except OSError as e:   # vanished or unreadable between the check and the read
        raise read_failure(e, path) from None
    except ForbiddenGlobal as e:
        raise DatasetError(
            f"{path}: refusing to unpickle the global {e} (expected a CIFAR pickle holding only "
            "numpy arrays, lists, ints and bytes)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, UnicodeDecodeError, ImportError) as e:
        raise DatasetError(
            f"{path}: truncated or not a CIFAR pickle ({type(e).__name__}: {e}); expected a pickled "
            "dict as in the layout " + CIFAR_LAYOUT
        ) from None


def pickle_field(d: dict, key: str) -> Any:
    """Look up ``key`` as bytes (py2 pickles / official files) or str (re-pickled files)."""
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def cifar_dir(root: str | os.PathLike) -> Path:
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
    if root.is_dir() and (root.name == CIFAR_DIRNAME or (root / CIFAR_META_FILE).exists()):
        return root
    raise DatasetError(
        f"CIFAR-10 data set not found at {root}: expected {root}/{CIFAR_LAYOUT}"
    )


def read_cifar_meta(folder: Path) -> list[str]:
    path = folder / CIFAR_META_FILE
    meta = load_pickle(path)
    names = pickle_field(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, (list, tuple)) or not names:
        raise DatasetError(f"{path}: expected a dict with a non-empty list under b'label_names'")
    return [n.decode("utf-8", "replace") if isinstance(n, (bytes, bytearray)) else str(n) for n in names]


def _read_cifar_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file; returns images N×32×32×3 uint8 (HWC) and int64 labels."""
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict with keys b'data' and b'labels', got {type(batch).__name__}")
    data, labels = pickle_field(batch, "data"), pickle_field(batch, "labels")
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
        raise DatasetError(f"{path}: expected keys b'data' and b'labels', found {keys}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: expected b'data' to be a uint8 array of shape (N, {CIFAR_ROW}) "
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
                           f"{CIFAR_META_FILE}), got range [{labels_arr.min()}, {labels_arr.max()}]")
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
        self.folder = cifar_dir(root)
        self.train = train
        self.transform = transform
        self.classes = read_cifar_meta(self.folder)
        files = CIFAR_TRAIN_FILES if train else (CIFAR_TEST_FILE,)
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
