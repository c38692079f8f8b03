"""Data sets and loaders for search and retraining (CIFAR-10 pickles, ImageNet-style folders).

Rooms: ``cifar`` (the pickle layout, read through ``unpickle``), ``imagenet`` (folders and the
search sample), ``transforms``, ``loaders``, ``synthetic`` (the smoke data), ``errors``.

The smoke profile generates its own data *in the real on-disk formats* (``generate_cifar_like``,
``generate_imagenet_like``) and reads it through the same loaders as the paper profile, so the
real loaders are exercised on every run. Every problem with a data set on disk is reported as
one :class:`DatasetError` that names the file or folder and the expected layout.
"""
from __future__ import annotations

from harness.data.cifar import CIFAR_DIRNAME, CIFAR10Pickle
from harness.data.errors import DatasetError
from harness.data.imagenet import SampleSpec, class_balanced_sample, imagenet_folder
from harness.data.loaders import (DataConfig, build_dataset, build_search_loaders,
                                  build_train_loaders, infer_num_classes)
from harness.data.synthetic import generate_cifar_like, generate_imagenet_like
from harness.data.transforms import (CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, Cutout,
                                     Lighting, cifar_transforms, imagenet_transforms)

__all__ = ["CIFAR10Pickle", "CIFAR_DIRNAME", "CIFAR_MEAN", "CIFAR_STD", "Cutout", "DataConfig",
           "DatasetError", "IMAGENET_MEAN", "IMAGENET_STD", "Lighting", "SampleSpec",
           "build_dataset", "build_search_loaders", "build_train_loaders",
           "class_balanced_sample", "cifar_transforms", "generate_cifar_like",
           "generate_imagenet_like", "imagenet_folder", "imagenet_transforms",
           "infer_num_classes"]
