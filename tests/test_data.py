"""Tests of harness.data: CIFAR pickles, ImageNet folders, smoke generators and loader factory."""

from __future__ import annotations

import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from harness.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    CIFAR10Pickle,
    Cutout,
    DataConfig,
    DatasetError,
    build_search_loaders,
    build_train_loaders,
    cifar_transforms,
    generate_cifar_like,
    generate_imagenet_like,
    imagenet_folder,
    imagenet_transforms,
    infer_num_classes,
)

torch.set_num_threads(1)

REAL_SUBSET = Path("/work/shared/data/cifar10-subset/cifar-10-subset-python.tar.gz")
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def esc(p: os.PathLike | str) -> str:
    return re.escape(str(p))


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated CIFAR-like set (200 train / 50 test), shared read-only by the tests."""
    root = tmp_path_factory.mktemp("cifar")
    generate_cifar_like(root, n_train=200, n_test=50, seed=0)
    return root


def _small_cifar(tmp_path: Path) -> Path:
    """A writable copy to corrupt."""
    return generate_cifar_like(tmp_path, n_train=20, n_test=10, seed=0)


# ------------------------------------------------------------------ CIFAR loading / generation


def test_generated_cifar_loads(cifar_root: Path) -> None:
    train = CIFAR10Pickle(cifar_root, train=True)
    test = CIFAR10Pickle(cifar_root / "cifar-10-batches-py", train=False)  # the folder itself
    assert len(train) == 200 and len(test) == 50
    assert train.data.shape == (200, 32, 32, 3) and train.data.dtype == np.uint8
    assert train.num_classes == 10 and len(set(train.classes)) == 10
    assert set(train.targets) == set(range(10))  # balanced labels, every class present
    assert all(0 <= t < 10 for t in test.targets)
    img, label = train[0]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and img.mode == "RGB"
    assert np.array_equal(np.asarray(img), train.data[0]) and label == train.targets[0]
    x, _ = CIFAR10Pickle(cifar_root, train=False, transform=cifar_transforms(False))[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    # channel-major rows: first 1024 bytes of a row are the red plane
    raw = pickle.loads((cifar_root / "cifar-10-batches-py" / "test_batch").read_bytes(), encoding="bytes")
    assert np.array_equal(raw[b"data"][3][:1024].reshape(32, 32), test.data[3][:, :, 0])


def test_generation_deterministic(tmp_path: Path) -> None:
    a = generate_cifar_like(tmp_path / "a", n_train=60, n_test=20, seed=3)
    b = generate_cifar_like(tmp_path / "b", n_train=60, n_test=20, seed=3)
    c = generate_cifar_like(tmp_path / "c", n_train=60, n_test=20, seed=4)
    assert sorted(os.listdir(a)) == sorted(CIFAR_FILES)  # and no temp files left behind
    for name in CIFAR_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in CIFAR_FILES[:-1]:
        assert (a / name).read_bytes() != (c / name).read_bytes(), name


def test_generated_set_is_learnable(tmp_path: Path) -> None:
    """A small CNN trained ~2 s on 1000 generated images beats chance (0.1) clearly."""
    torch.manual_seed(0)
    generate_cifar_like(tmp_path, n_train=1000, n_test=300, seed=1)
    mean, std = torch.tensor(CIFAR_MEAN)[:, None, None], torch.tensor(CIFAR_STD)[:, None, None]

    def tensors(ds: CIFAR10Pickle) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float() / 255.0
        return (x - mean) / std, torch.tensor(ds.targets)

    xtr, ytr = tensors(CIFAR10Pickle(tmp_path, train=True))
    xte, yte = tensors(CIFAR10Pickle(tmp_path, train=False))
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(3):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 50):
            idx = perm[i:i + 50]
            loss = nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    assert acc > 0.4, acc


def test_real_cifar_subset(tmp_path: Path) -> None:
    if not REAL_SUBSET.is_file():
        pytest.skip(f"real CIFAR-10 subset not present at {REAL_SUBSET}")
    with tarfile.open(REAL_SUBSET) as tar:
        tar.extractall(tmp_path, filter="data")
    train, test = CIFAR10Pickle(tmp_path, train=True), CIFAR10Pickle(tmp_path, train=False)
    assert (len(train), len(test)) == (5085, 1017)
    assert train.classes[0] == "airplane" and train.classes[-1] == "truck"
    assert set(test.targets) == set(range(10))
    assert train.data.shape == (5085, 32, 32, 3)
    assert infer_num_classes(DataConfig("cifar10", str(tmp_path))) == 10


# ------------------------------------------------------------------ CIFAR errors


def test_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=f"not found at {esc(missing)}: expected .*cifar-10-batches-py/"):
        CIFAR10Pickle(missing)


def test_missing_test_batch(tmp_path: Path) -> None:
    folder = _small_cifar(tmp_path)
    (folder / "test_batch").unlink()
    CIFAR10Pickle(tmp_path, train=True)  # train files are all there
    with pytest.raises(DatasetError, match=f"missing: {esc(folder / 'test_batch')} \\(expected"):
        CIFAR10Pickle(tmp_path, train=False)


def test_truncated_pickle(tmp_path: Path) -> None:
    folder = _small_cifar(tmp_path)
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=f"{esc(folder / 'data_batch_2')}: truncated or not a CIFAR pickle"):
        CIFAR10Pickle(tmp_path)


def _write_batch(folder: Path, name: str, obj: object) -> Path:
    path = folder / name
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.mark.parametrize(
    "batch, expected",
    [
        ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, r"b'data' to be a uint8 array of shape \(N, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, r"b'data' to be a uint8 array of shape \(N, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "one label per data row, got 3 labels for 4"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels in \[0, 10\)"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "keys b'data' and b'labels', found \\['data'\\]"),
        ([1, 2, 3], "a pickled dict"),
    ],
)
def test_malformed_batch(tmp_path: Path, batch: object, expected: str) -> None:
    folder = _small_cifar(tmp_path)
    path = _write_batch(folder, "test_batch", batch)
    with pytest.raises(DatasetError, match=f"{esc(path)}: expected {expected}"):
        CIFAR10Pickle(tmp_path, train=False)


def test_bad_meta(tmp_path: Path) -> None:
    folder = _small_cifar(tmp_path)
    path = _write_batch(folder, "batches.meta", {b"label_names": []})
    with pytest.raises(DatasetError, match=f"{esc(path)}: expected .*label_names"):
        CIFAR10Pickle(tmp_path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_forbidden_global_is_not_unpickled(tmp_path: Path) -> None:
    folder = _small_cifar(tmp_path)
    marker = tmp_path / "pwned"
    path = _write_batch(folder, "data_batch_1", {b"data": _Evil(marker), b"labels": []})
    with pytest.raises(DatasetError, match=f"{esc(path)}: refusing to unpickle the global .*system .*expected"):
        CIFAR10Pickle(tmp_path)
    assert not marker.exists()


# ------------------------------------------------------------------ ImageNet-style folders


@pytest.fixture()
def inet_root(tmp_path: Path) -> Path:
    return generate_imagenet_like(tmp_path / "inet", num_classes=3, n_train_per_class=4, n_val_per_class=2,
                                  size=32, seed=0)


def test_imagenet_like_loads(inet_root: Path) -> None:
    train = imagenet_folder(inet_root, "train", imagenet_transforms(True, 24))
    val = imagenet_folder(inet_root, "val", imagenet_transforms(False, 24))
    assert train.classes == val.classes == ["n00000000", "n00000001", "n00000002"]
    assert (len(train), len(val)) == (12, 6)
    x, y = val[5]
    assert x.shape == (3, 24, 24) and y == 2
    assert all(p.endswith(".JPEG") for p, _ in train.samples)
    assert infer_num_classes(DataConfig("imagenet", str(inet_root))) == 3


def test_imagenet_like_deterministic(tmp_path: Path) -> None:
    a = generate_imagenet_like(tmp_path / "a", 2, 2, 1, size=32, seed=5)
    b = generate_imagenet_like(tmp_path / "b", 2, 2, 1, size=32, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*.JPEG"))
    assert len(files) == 6 and files == sorted(p.relative_to(b) for p in b.rglob("*.JPEG"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_imagenet_missing_and_empty(tmp_path: Path, inet_root: Path) -> None:
    with pytest.raises(DatasetError, match=f"not found at {esc(tmp_path / 'x')}: expected"):
        imagenet_folder(tmp_path / "x", "train", None)
    with pytest.raises(DatasetError, match=f"split folder missing: {esc(inet_root / 'test')}"):
        imagenet_folder(inet_root, "test", None)
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=f"no class folders in {esc(empty / 'train')}"):
        imagenet_folder(empty, "train", None)
    (empty / "train" / "n1").mkdir()
    (empty / "train" / "n1" / "readme.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=f"class folders without images: {esc(empty / 'train' / 'n1')}"):
        imagenet_folder(empty, "train", None)


def test_imagenet_class_mismatch(inet_root: Path) -> None:
    (inet_root / "val" / "n00000002").rename(inet_root / "val" / "n00000099")
    with pytest.raises(DatasetError, match=r"differ .*n00000099.*expected the same set of classes"):
        imagenet_folder(inet_root, "val", None)


def test_imagenet_corrupt_image(inet_root: Path) -> None:
    folder = inet_root / "train" / "n00000001"
    good = sorted(folder.iterdir())[0].read_bytes()
    (folder / "garbage.JPEG").write_bytes(b"this is not a jpeg")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    ds = imagenet_folder(inet_root, "train", None)
    for name in ("garbage.JPEG", "truncated.jpg"):
        i = [p for p, _ in ds.samples].index(str(folder / name))
        with pytest.raises(DatasetError, match=f"cannot decode image {esc(folder / name)}"):
            ds[i]


def test_imagenet_other_modes_become_rgb(inet_root: Path) -> None:
    folder = inet_root / "train" / "n00000000"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8), "L").save(folder / "gray.JPEG")
    Image.fromarray(rng.integers(0, 255, (20, 30, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.png")
    Image.new("CMYK", (30, 20), (10, 20, 30, 40)).save(folder / "cmyk.jpg")
    ds = imagenet_folder(inet_root, "train", imagenet_transforms(False, 16))
    raw = imagenet_folder(inet_root, "train", None)
    for name in ("gray.JPEG", "alpha.png", "cmyk.jpg"):
        i = [p for p, _ in ds.samples].index(str(folder / name))
        assert raw[i][0].mode == "RGB"
        assert ds[i][0].shape == (3, 16, 16)


# ------------------------------------------------------------------ loader factory


def test_search_loaders_split_and_determinism(cifar_root: Path) -> None:
    cfg = DataConfig("cifar10", str(cifar_root), batch_size=16)
    train, val, n = build_search_loaders(cfg, train_portion=0.5, seed=7)
    assert n == 10
    a, b = list(train.dataset.indices), list(val.dataset.indices)
    assert not set(a) & set(b) and sorted(a + b) == list(range(200))
    assert a == list(range(100))  # DARTS: first half trains the weights
    assert len(train) == 100 // 16 and all(x.shape == (16, 3, 32, 32) for x, _ in train)  # drop_last

    def first(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)  # augmentation draws from torch's global RNG with num_workers=0
        x, y = next(iter(build_search_loaders(cfg, seed=seed)[0]))
        return x, y

    x1, y1 = first(7)
    x2, y2 = first(7)
    x3, y3 = first(8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(y1, y3) or not torch.equal(x1, x3)


def test_search_loaders_subset_and_errors(cifar_root: Path) -> None:
    cfg = DataConfig("cifar10", str(cifar_root), batch_size=8, train_subset=60)
    train, val, _ = build_search_loaders(cfg, train_portion=0.5)
    assert sorted(train.dataset.indices + val.dataset.indices) == list(range(60))
    with pytest.raises(ValueError, match="fewer than one batch"):
        build_search_loaders(DataConfig("cifar10", str(cifar_root), batch_size=64, train_subset=60))
    with pytest.raises(ValueError, match="expected one of cifar10, imagenet"):
        build_search_loaders(DataConfig("mnist", str(cifar_root)))


def test_train_loaders(cifar_root: Path) -> None:
    cfg = DataConfig("cifar10", str(cifar_root), batch_size=32, cutout=16, test_subset=40)
    train, test, n = build_train_loaders(cfg, seed=0)
    assert n == 10 and len(train.dataset) == 200 and len(test.dataset) == 40
    assert train.drop_last and not test.drop_last
    labels = torch.cat([y for _, y in test])
    assert labels.tolist() == CIFAR10Pickle(cifar_root, train=False).targets[:40]  # no shuffle
    x, _ = next(iter(test))
    ref = cifar_transforms(False)(CIFAR10Pickle(cifar_root, train=False)[0][0])
    assert torch.equal(x[0], ref)  # no augmentation on the test set


def test_imagenet_loaders_subset_covers_classes(inet_root: Path) -> None:
    cfg = DataConfig("imagenet", str(inet_root), batch_size=2, image_size=16, train_subset=6, test_subset=3)
    train, test, n = build_train_loaders(cfg)
    assert n == 3
    ds = train.dataset.dataset
    assert sorted(ds.targets[i] for i in train.dataset.indices) == [0, 0, 1, 1, 2, 2]
    assert [y for _, y in test.dataset] == [0, 1, 2]
    x, _ = next(iter(train))
    assert x.shape == (2, 3, 16, 16)


def test_distributed_loaders(cifar_root: Path, tmp_path: Path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cfg = DataConfig("cifar10", str(cifar_root), batch_size=16)
        train, val, _ = build_search_loaders(cfg, seed=3, distributed=True)
        assert isinstance(train.sampler, torch.utils.data.DistributedSampler)
        assert train.sampler.seed == 3 and len(list(train.sampler)) == 100
        tr, te, _ = build_train_loaders(cfg, distributed=True)
        assert list(te.sampler) == list(range(50))  # eval: not shuffled
    finally:
        dist.destroy_process_group()


def test_cutout() -> None:
    torch.manual_seed(0)
    out = Cutout(8)(torch.ones(3, 32, 32))
    zeros = (out == 0).all(0)
    assert 0 < int(zeros.sum()) <= 64 and (out[:, ~zeros] == 1).all()
