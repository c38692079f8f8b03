"""Training and test transforms: DARTS' CIFAR-10 augmentation with Cutout, ImageNet's with the
official Lighting noise.
"""
from __future__ import annotations

from typing import Callable

import torch
from torchvision import transforms as T


# DARTS' CIFAR-10 statistics (the search/retrain code of DARTS, PC-DARTS and CP-NAS use them).
CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
