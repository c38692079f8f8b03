"""1-bit primitives shared by every binary op.

Conventions follow the official DCP-NAS code (see ../shared/docs/ALGORITHM.md):
- activations: sign(x) forward, Bi-Real piecewise-quadratic gradient backward;
- weights: sign(w) scaled per output channel by beta = mean(|w|) (detached), gradient passed
  straight through clamp(w, -1, 1).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _sign(x: Tensor) -> Tensor:
    """sign with sign(0) = +1, so every binary value is exactly +-1 (torch.sign(0) is 0).

    sign(sign(x) + 1/2) maps {-1, 0, +1} to {-1, +1, +1}; on CPU it is ~10x faster than
    torch.where. Its derivative is zero, so the input is detached (no graph is recorded)."""
    return torch.sign(x.detach()).add_(0.5).sign_()


class SignBiReal(torch.autograd.Function):
    """sign(x) forward; Bi-Real's derivative of the piecewise quadratic ApproxSign backward:
    2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere (Liu et al., ECCV 2018), which is
    max(0, 2 - 2|x|) in one fused expression (cheaper on CPU than masks and two wheres)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return _sign(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * x.abs().mul_(-2).add_(2).clamp_(min=0)


def sign_bireal(x: Tensor) -> Tensor:
    return SignBiReal.apply(x)


def binarize_weight(w: Tensor) -> Tensor:
    """beta * sign(w) with beta = mean |w| per output channel (detached) and a clamp STE.

    Forward value: beta_c * sign(w); backward: d/dw of clamp(w, -1, 1) (1 inside, 0 outside).
    """
    beta = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True).detach()
    clamped = w.clamp(-1.0, 1.0)
    binary = (_sign(w) - clamped).detach() + clamped
    return beta * binary


def weight_scale(w: Tensor) -> Tensor:
    """Per-output-channel scale beta = mean |w| (shape C_out x 1 x 1 x 1)."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


class BinaryConv2d(nn.Conv2d):
    """Conv2d with binary weights (always) and binary input activations (optional).

    Depthwise convs in the official op layout keep real-valued activations and binarize only
    their weights; pointwise / full convs binarize both (``binary_input=True``)."""

    def __init__(self, *args, binary_input: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.binary_input = binary_input
        # False only during step 1 of the two-step retraining (binary activations, real weights)
        self.binary_weight = True

    def forward(self, x: Tensor) -> Tensor:
        if self.binary_input:
            x = sign_bireal(x)
        w = binarize_weight(self.weight) if self.binary_weight else self.weight
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", binary_input={self.binary_input}"


def binary_convs(module: nn.Module) -> Iterable[BinaryConv2d]:
    return (m for m in module.modules() if isinstance(m, BinaryConv2d))


def set_weight_binarization(module: nn.Module, enabled: bool) -> None:
    """Switch weight binarization of every BinaryConv2d (two-step training, step 1 = off)."""
    for conv in binary_convs(module):
        conv.binary_weight = enabled


def reconstruction_loss(module: nn.Module) -> Tensor:
    """L_R = sum over binary convs of ||w - beta o sign(w)||^2 (Eq. 4.23).

    beta is the per-channel mean |w| here (not detached: L_R is meant to pull w towards
    +-beta). Zero exactly when every channel's weights are already +-beta_c."""
    total: Tensor | None = None
    for conv in binary_convs(module):
        w = conv.weight
        term = (w - weight_scale(w) * _sign(w)).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total
