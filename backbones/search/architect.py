"""Architecture-parameter updates (the DARTS 'architect'), first order.

First-order DARTS: alpha takes one Adam step on the validation loss with the weights fixed
(Liu et al., 2019, Eq. 6 with xi = 0). The second-order (unrolled) variant lives in
``backbones.search.darts``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from backbones.distributed import average_gradients
from backbones.search.base import Batch
from backbones.supernet import Supernet


def make_arch_optimizer(model: Supernet, lr: float, wd: float) -> torch.optim.Adam:
    return torch.optim.Adam(model.arch_parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=wd)


def make_weight_optimizer(model: Supernet, lr: float, momentum: float,
                          wd: float) -> torch.optim.SGD:
    return torch.optim.SGD(model.weight_parameters(), lr=lr, momentum=momentum, weight_decay=wd)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def first_order_arch_step(model: Supernet, optimizer: torch.optim.Optimizer, batch: Batch,
                          loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.cross_entropy
                          ) -> float:
    x, y = batch
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    average_gradients(model.arch_parameters())
    optimizer.step()
    return float(loss.detach())


def weight_step(model: nn.Module, params: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                loss: Tensor, grad_clip: float) -> None:
    """Backward, average over ranks, clip, step: the weight half of a bi-level step.

    Averaging before clipping clips the gradient of the global batch, as DDP does, so N ranks
    x batch B take the step one process takes on batch N x B. The caller zeroes the gradients
    before computing ``loss`` (alpha grads are dropped here)."""
    loss.backward()
    average_gradients(params)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
