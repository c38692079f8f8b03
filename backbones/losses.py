"""The training losses that compare two networks, used by the search methods and by retraining
alike: CP-NAS's kernel-level Child-Parent loss (Eq. 4.17: per-filter MSE between a real
Parent's kernels and a 1-bit Child's, plus intra-class compactness) and knowledge distillation
from a teacher's softened outputs."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.binary import BinaryConv2d

#: which Child kernel the CP loss compares: its binarized kernel or its latent real weight
CPKernel = Literal["binarized", "latent"]


def kernel_cp_loss(pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """sum over (parent kernel, child kernel) pairs and filters of the per-filter MSE
    (without the lambda / 2 factor). The Parent kernel is a fixed target; the Child kernel is
    what the caller compares (binarized or latent: ``CPNAS.active_kernel_pairs``)."""
    total: Tensor | None = None
    for w_p, h_c in pairs:
        target = w_p.detach()
        term = (h_c - target).pow(2).flatten(1).mean(dim=1).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def matching_kernels(parent: nn.Module, child: nn.Module) -> list[tuple[nn.Conv2d, BinaryConv2d]]:
    """(Parent conv, Child binary conv) pairs of two networks of the same architecture, one
    real-valued and one 1-bit (their convs correspond in order; the real stem has no binary
    counterpart and is left out). Raises if the layouts differ."""
    p_convs, c_convs = convs(parent), convs(child)
    if len(p_convs) != len(c_convs):
        raise RuntimeError(f"Parent and Child have different conv layouts ({len(p_convs)} vs "
                           f"{len(c_convs)} convs)")
    pairs = []
    for pc, cc in zip(p_convs, c_convs):
        if pc.weight.shape != cc.weight.shape:
            raise RuntimeError("Parent and Child kernels do not correspond")
        if isinstance(cc, BinaryConv2d):
            pairs.append((pc, cc))
    return pairs


def child_kernel(conv: BinaryConv2d, mode: str) -> Tensor:
    """The Child kernel the CP loss compares with the Parent's: its binarized kernel (its own
    binarizer; ``"binarized"``) or its latent real weight (``"latent"``)."""
    if mode == "binarized":
        return conv.binarized_weight()
    if mode == "latent":
        return conv.weight
    raise ValueError(f"cp_kernel must be 'binarized' or 'latent', got {mode!r}")


def intra_class_compactness(features: Tensor, labels: Tensor) -> Tensor:
    """The second term of the CP loss (Eq. 4.17): mean over the batch of ||f_n - c_{y_n}||^2,
    c_y the mean feature of class y in the batch (a centre-loss with batch centres)."""
    classes, inverse = labels.unique(return_inverse=True)
    centres = torch.zeros(len(classes), features.shape[1], dtype=features.dtype,
                          device=features.device).index_add_(0, inverse, features)
    counts = torch.bincount(inverse, minlength=len(classes)).to(features.dtype).unsqueeze(1)
    centres = centres / counts
    return (features - centres[inverse]).pow(2).sum(dim=1).mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened output distributions, times T^2."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1),
                    reduction="batchmean") * t * t
