"""Synthetic smoke data in the real on-disk formats (CIFAR-10 pickles, ImageNet-layout JPEGs),
so the smoke profile reads it through the real loaders.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from backbones.atomic import atomic_write_bytes, atomic_write_text
from harness.data.cifar import (CIFAR_DIRNAME, CIFAR_META_FILE, CIFAR_ROW, CIFAR_TEST_FILE,
                                CIFAR_TRAIN_FILES, INCOMPLETE_MARKER)


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
    # that no loader reads (``cifar_dir``), instead of old and new batches side by side
    atomic_write_text(folder / INCOMPLETE_MARKER, "generation started; not finished\n")
    rng = np.random.default_rng(seed)
    train_labels = _balanced_labels(n_train, num_classes, rng)
    test_labels = _balanced_labels(n_test, num_classes, rng)
    train_imgs = _render(train_labels, 32, rng)
    test_imgs = _render(test_labels, 32, rng)

    def rows(imgs: np.ndarray) -> np.ndarray:  # HWC -> channel-major rows of 3072
        return np.ascontiguousarray(imgs.transpose(0, 3, 1, 2).reshape(len(imgs), CIFAR_ROW))

    bounds = np.linspace(0, n_train, 6).astype(int)
    for i, name in enumerate(CIFAR_TRAIN_FILES):
        a, b = bounds[i], bounds[i + 1]
        atomic_write_bytes(folder / name, _cifar_pickle_bytes({
            b"batch_label": f"training batch {i + 1} of 5 (synthetic, seed {seed})".encode(),
            b"labels": [int(x) for x in train_labels[a:b]],
            b"data": rows(train_imgs[a:b]),
            b"filenames": [f"synthetic_train_{j:06d}.png".encode() for j in range(a, b)],
        }))
    atomic_write_bytes(folder / CIFAR_TEST_FILE, _cifar_pickle_bytes({
        b"batch_label": f"testing batch 1 of 1 (synthetic, seed {seed})".encode(),
        b"labels": [int(x) for x in test_labels],
        b"data": rows(test_imgs),
        b"filenames": [f"synthetic_test_{j:06d}.png".encode() for j in range(n_test)],
    }))
    atomic_write_bytes(folder / CIFAR_META_FILE, _cifar_pickle_bytes({
        b"num_cases_per_batch": int(bounds[1] - bounds[0]),
        b"label_names": [_class_name(c).encode() for c in range(num_classes)],
        b"num_vis": CIFAR_ROW,
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
