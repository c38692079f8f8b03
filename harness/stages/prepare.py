"""`harness prepare`: generate the smoke data sets in the real formats, or check real ones.

Always: CIFAR-10 pickles (cifar-10-batches-py), an ImageNet-layout JPEG folder
(train|val/<wnid>/*.JPEG), a COCO-json detection set and a
Market-1501 re-ID set, all generated deterministically under <paths.data>/smoke, so the real
loaders (ours for CIFAR, mmdet's CocoDataset, torchreid's Market1501) are always exercised.
Then the active profile's classification data root is checked (nothing is downloaded) and a clear error names what
is missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from backbones.atomic import atomic_write_json
from downstream.detection.smoke_data import generate_coco_smoke
from downstream.reid.smoke_data import generate_market_smoke
from harness.config import Params
from harness.data import (CIFAR10Pickle, generate_cifar_like, generate_imagenet_like,
                          imagenet_folder)
from harness.stages.common import ensure_writable


def smoke_root(params: Params) -> Path:
    return Path(params.paths.data) / "smoke"


def run_prepare(params: Params, seed: int = 0, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    prof = params.active
    made: dict[str, Any] = {}
    # smoke data is cheap and made for every profile (the tests and smoke stages use it)
    root = ensure_writable(smoke_root(params))
    sd = prof.smoke_data
    console.print(f"generating smoke data under {root}")
    made["cifar10"] = str(generate_cifar_like(root / "cifar10", n_train=sd.cifar_train,
                                              n_test=sd.cifar_test, seed=seed))
    made["imagenet"] = str(generate_imagenet_like(
        root / "imagenet", num_classes=sd.imagenet_classes,
        n_train_per_class=sd.imagenet_train_per_class,
        n_val_per_class=sd.imagenet_val_per_class, size=sd.imagenet_size, seed=seed))
    made["coco"] = str(generate_coco_smoke(root / "coco", n_train=sd.coco_train,
                                           n_val=sd.coco_val, size=sd.coco_size, seed=seed))
    made["market1501"] = str(generate_market_smoke(root / "reid", n_ids=sd.market_ids,
                                                   n_cams=sd.market_cams, seed=seed))
    atomic_write_json(root / "MANIFEST.json", {"seed": seed, "datasets": made})
    # whatever the profile, the classification data must load through the real loader
    data = prof.data
    if data.name == "cifar10":
        n_train = len(CIFAR10Pickle(data.root, train=True))
        n_test = len(CIFAR10Pickle(data.root, train=False))
    else:
        n_train = len(imagenet_folder(data.root, "train"))
        n_test = len(imagenet_folder(data.root, "val"))
    console.print(f"{data.name} at {data.root}: {n_train} train / {n_test} test images")
    made["checked"] = {"dataset": data.name, "root": data.root, "train": n_train,
                       "test": n_test}
    return made
