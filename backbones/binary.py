"""1-bit primitives shared by every binary op (search supernet and final network alike).

Conventions follow the official DCP-NAS code (YanjingLi0202/DCP-NAS, ``binary/MConv_new.py``,
``binary/MFunction_new.py``; docs/network.md):
- activations: sign(x) forward, Bi-Real piecewise-quadratic gradient backward;
- weights, selectable per network (``weight_binarizer``):
  ``official``: sign(w) * 0.02 * |M| with a learnable per-output-channel M (MConv_new), and the
  official backward (its straight-through term and its built-in 1e-4 reconstruction pull);
  ``mean_abs``: sign(w) * mean|w| per output channel (detached; XNOR-Net / Bi-Real), with the
  plain clamp straight-through gradient.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Binarizer = Literal["official", "mean_abs"]
BINARIZERS: tuple[str, ...] = ("official", "mean_abs")
#: the official code's constants: the sign's magnitude and the weight of the reconstruction
#: pull built into its backward
OFFICIAL_BIN = 0.02
OFFICIAL_PULL = 1e-4

_default_binarizer: list[str] = ["official"]


@contextlib.contextmanager
def weight_binarizer(name: str | None) -> Iterator[None]:
    """Build every BinaryConv2d created inside the block with weight binarizer ``name``
    (timm's layer-config style: a network's constructor does not need a parameter for it).
    ``None`` keeps the enclosing block's choice."""
    if name is None:
        yield
        return
    if name not in BINARIZERS:
        raise ValueError(f"unknown weight binarizer {name!r}; expected one of "
                         f"{', '.join(BINARIZERS)}")
    _default_binarizer.append(name)
    try:
        yield
    finally:
        _default_binarizer.pop()


def _sign(x: Tensor) -> Tensor:
    """sign with sign(0) = +1, so every binary value is exactly +-1 (torch.sign(0) is 0).

    sign(sign(x) + 1/2) maps {-1, 0, +1} to {-1, +1, +1}; on CPU it is ~10x faster than
    torch.where. Its derivative is zero, so the input is detached (no graph is recorded)."""
    return torch.sign(x.detach()).add_(0.5).sign_()


class SignBiReal(torch.autograd.Function):
    """sign(x) forward; Bi-Real's derivative of the piecewise quadratic ApproxSign backward:
    grad * s(x), s(x) = 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere (Liu et al., ECCV
    2018), i.e. max(0, 2 - 2|x|) in one fused expression (cheaper on CPU than masks and two
    wheres). No forward-mode rule here: torch.compile does not trace a Function that defines
    ``jvp`` (it breaks the graph at every binary op), so forward mode uses ``SignBiRealJvp``."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return _sign(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * _bireal_slope(x)


class SignBiRealJvp(torch.autograd.Function):
    """``SignBiReal`` with its forward-mode rule: jvp returns tangent * s(x) with the same
    slope s(x) = max(0, 2 - 2|x|) as ``SignBiReal.backward``, so a Jacobian-vector product
    agrees with the vector-Jacobian products of the reverse pass. Used inside
    ``forward_mode_sign()`` only (the GGN product's J v pass, which runs eagerly)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_forward(x)
        return _sign(x)

    @staticmethod
    def jvp(ctx, x_t: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return x_t * _bireal_slope(x)


def _bireal_slope(x: Tensor) -> Tensor:
    """d ApproxSign / dx = max(0, 2 - 2|x|) (a new tensor; ``x`` is left alone)."""
    return x.abs().mul_(-2).add_(2).clamp_(min=0)


_FORWARD_MODE: list[bool] = [False]


@contextlib.contextmanager
def forward_mode_sign() -> Iterator[None]:
    """Inside the block ``sign_bireal`` carries forward-mode tangents (``SignBiRealJvp``)."""
    _FORWARD_MODE.append(True)
    try:
        yield
    finally:
        _FORWARD_MODE.pop()


def sign_bireal(x: Tensor) -> Tensor:
    return (SignBiRealJvp if _FORWARD_MODE[-1] else SignBiReal).apply(x)


class ModulatedSign(torch.autograd.Function):
    """The official weight binarizer (MCF_Function of MFunction_new.py), as it is written.

    Forward: ``w_b = sign(w) * 0.02 * |M|`` with M of shape (C_out, 1, 1, 1).
    Backward, with g = dL/dw_b and r = w - 0.02 sign(w) |M| (the reconstruction residual):
      dL/dw = g * |M| + 1e-4 * r
      dL/dM = sum_{i,h,w} (g * w) - 1e-4 * sum_{i,h,w} (r * 0.02 sign(w))
    This is not the derivative of the forward: the straight-through term has no 0.02 factor
    and no clamp, dL/dM uses the latent w (not sign(w) * 0.02) and ignores the sign of M in
    |M|, and both carry a built-in pull of w towards 0.02 sign(w) |M|. Only sign(0) differs
    from the official code: +1 here (torch.sign gives 0), so every binary weight is +-1."""

    @staticmethod
    def forward(ctx, w: Tensor, m: Tensor) -> Tensor:  # type: ignore[override]
        m_abs = m.abs()
        ctx.save_for_backward(w, m_abs)
        return _sign(w).mul_(OFFICIAL_BIN) * m_abs

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        w, m_abs = ctx.saved_tensors
        sw = _sign(w).mul_(OFFICIAL_BIN)             # 0.02 sign(w)
        resid = w - sw * m_abs                      # r
        grad_w = g * m_abs + OFFICIAL_PULL * resid
        dims = tuple(range(1, w.dim()))
        grad_m = (g * w).sum(dim=dims, keepdim=True) - OFFICIAL_PULL * (resid * sw).sum(
            dim=dims, keepdim=True)
        return grad_w, grad_m


class MeanAbsSign(torch.autograd.Function):
    """XNOR-Net / Bi-Real weight binarizer.

    Forward: ``w_b = beta * sign(w)``, beta = mean |w| per output channel, treated as a
    constant. Backward: ``dL/dw = g * 1{|w| <= 1}``, the plain clamp straight-through
    estimator (the derivative of clamp(w, -1, 1)), not scaled by beta."""

    @staticmethod
    def forward(ctx, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(w)
        return weight_scale(w.detach()) * _sign(w)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1).to(g.dtype)


def binarize_weight(w: Tensor) -> Tensor:
    """The ``mean_abs`` binarizer as a function: beta * sign(w), clamp straight-through."""
    return MeanAbsSign.apply(w)


def weight_scale(w: Tensor) -> Tensor:
    """Per-output-channel scale beta = mean |w| (shape C_out x 1 x 1 x 1)."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


class BinaryConv2d(nn.Conv2d):
    """Conv2d with binary weights (always) and binary input activations (optional).

    In the official op layout only the pointwise conv of a dil/sep half binarizes its input;
    depthwise convs, the cells' 1x1 preprocessing and FactorizedReduce see real activations
    (``binary_input=False``). ``binarizer`` defaults to the one of the enclosing
    :func:`weight_binarizer` block (``official`` outside any): ``official`` adds the learnable
    per-channel modulation ``modulation`` (M, init randn as MConv_new)."""

    def __init__(self, *args, binary_input: bool = True, binarizer: str | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.binary_input = binary_input
        self.binarizer = binarizer or _default_binarizer[-1]
        if self.binarizer not in BINARIZERS:
            raise ValueError(f"unknown weight binarizer {self.binarizer!r}; expected one of "
                             f"{', '.join(BINARIZERS)}")
        if self.binarizer == "official":
            self.modulation = nn.Parameter(torch.randn(self.out_channels, 1, 1, 1))
        # False only during step 1 of the two-step retraining (binary activations, real weights)
        self.binary_weight = True

    def binarized_weight(self) -> Tensor:
        """The +-scale weight the conv computes with (scale per output channel)."""
        if self.binarizer == "official":
            return ModulatedSign.apply(self.weight, self.modulation)
        return MeanAbsSign.apply(self.weight)

    def weight_scale(self) -> Tensor:
        """The per-output-channel magnitude of the binarized weight (differentiable)."""
        if self.binarizer == "official":
            return OFFICIAL_BIN * self.modulation.abs()
        return weight_scale(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.binary_input:
            x = sign_bireal(x)
        w = self.binarized_weight() if self.binary_weight else self.weight
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", binary_input={self.binary_input}, "
                f"binarizer={self.binarizer}")


def binary_convs(module: nn.Module) -> Iterable[BinaryConv2d]:
    return (m for m in module.modules() if isinstance(m, BinaryConv2d))


def set_weight_binarization(module: nn.Module, enabled: bool) -> None:
    """Switch weight binarization of every BinaryConv2d (two-step training, step 1 = off)."""
    for conv in binary_convs(module):
        conv.binary_weight = enabled


def reconstruction_loss(module: nn.Module) -> Tensor:
    """L_R = sum over binary convs of ||w - s o sign(w)||^2 (Eq. 4.23), s the conv's own
    per-channel scale (mean |w|, or 0.02 |M| for the official binarizer; not detached: L_R
    pulls w and the scale towards each other). Zero exactly when every channel's weights are
    already +-s_c."""
    total: Tensor | None = None
    for conv in binary_convs(module):
        w = conv.weight
        term = (w - conv.weight_scale() * _sign(w)).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total
