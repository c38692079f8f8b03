"""The 8 candidate ops of the DARTS space, each in a real-valued and a 1-bit variant.

Real ops are DARTS' (ReLU -> conv -> BN). Binary ops are the official DCP-NAS retraining layout
(``models/darts_ops_step2_sc_out.py`` of YanjingLi0202/DCP-NAS; docs/network.md),
used alike by the 1-bit Child supernet and the final network:
- a dil/sep half: BN -> depthwise conv (binary weights, real input) -> BN -> PReLU -> pointwise
  conv (binary weights, binary input) -> BN -> (+ identity shortcut when stride 1) -> PReLU;
  sep_conv is two halves (the second at stride 1), dil_conv one half with dilation 2;
- preprocessing 1x1 conv: BN -> conv (binary weights, real input) -> BN -> PReLU;
- FactorizedReduce: BN -> two offset stride-2 1x1 convs (binary weights, real input) -> concat
  -> BN -> PReLU;
- pools are followed by a BN (PoolBN); skip is the identity or FactorizedReduce.
BatchNorms after convs and pools use eps 1e-3, as the official code.
``OPS[name](C, stride, affine, binary)`` builds one op.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from backbones.binary import BinaryConv2d

#: eps of the BatchNorms after convs and pools in the official binary layout
BN_EPS = 1e-3

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Module):
    """Preprocessing 1x1 conv of a cell. Real: ReLU -> conv -> BN (DARTS). Binary: BN -> conv
    (binary weights, real input) -> BN -> PReLU (official)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, binary: bool = False) -> None:
        super().__init__()
        if binary:
            self.op = nn.Sequential(
                nn.BatchNorm2d(c_in, affine=affine),
                BinaryConv2d(c_in, c_out, kernel, stride, padding, bias=False,
                             binary_input=False),
                nn.BatchNorm2d(c_out, eps=BN_EPS, affine=affine),
                nn.PReLU(c_out))
        else:
            self.op = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
                nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class BinaryDilConvHalf(nn.Module):
    """One official dil/sep half; see the module docstring. The identity shortcut (Bi-Real
    style, what lets 1-bit cells train) is added before the last PReLU when stride is 1."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(c_in, eps=BN_EPS, affine=affine)
        self.dw = BinaryConv2d(c_in, c_in, kernel, stride, padding, dilation=dilation,
                               groups=c_in, bias=False, binary_input=False)
        self.bn1 = nn.BatchNorm2d(c_in, eps=BN_EPS, affine=affine)
        self.act0 = nn.PReLU(c_in)
        self.pw = BinaryConv2d(c_in, c_out, 1, bias=False, binary_input=True)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS, affine=affine)
        self.act1 = nn.PReLU(c_out)
        self.shortcut = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.pw(self.act0(self.bn1(self.dw(self.bn0(x))))))
        return self.act1(out + x if self.shortcut else out)


class DilConv(nn.Module):
    """Dilated depthwise conv followed by a pointwise conv (binary: one official half)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True, binary: bool = False) -> None:
        super().__init__()
        if binary:
            self.op: nn.Module = BinaryDilConvHalf(c_in, c_out, kernel, stride, padding,
                                                   dilation, affine)
        else:  # DARTS: ReLU, dw, pw, BN
            self.op = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in,
                          bias=False),
                nn.Conv2d(c_in, c_out, 1, bias=False),
                nn.BatchNorm2d(c_out, affine=affine),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked (depthwise, pointwise) pairs, as in DARTS."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, binary: bool = False) -> None:
        super().__init__()
        self.op = nn.Sequential(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine, binary),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine, binary),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Identity(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Zero(nn.Module):
    """The 'none' op: a zero tensor of the output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs. Real: ReLU first, BN after
    (DARTS). Binary: BN first, binary-weight convs on real input, BN (eps 1e-3), PReLU."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, binary: bool = False) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of channels, got {c_out}")
        self.binary = binary
        if binary:
            self.pre: nn.Module = nn.BatchNorm2d(c_in, affine=affine)
            self.conv_1: nn.Conv2d = BinaryConv2d(c_in, c_out // 2, 1, stride=2, bias=False,
                                                  binary_input=False)
            self.conv_2: nn.Conv2d = BinaryConv2d(c_in, c_out // 2, 1, stride=2, bias=False,
                                                  binary_input=False)
            self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, affine=affine)
            self.act: nn.Module = nn.PReLU(c_out)
        else:
            self.pre = nn.ReLU(inplace=False)
            self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
            self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
            self.bn = nn.BatchNorm2d(c_out, affine=affine)
            self.act = Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre(x)
        a = self.conv_1(x)
        # the second path sees the input shifted by one pixel; padding keeps odd sizes aligned
        b = self.conv_2(nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)))
        return self.act(self.bn(torch.cat([a, b], dim=1)))


def _pool(kind: str, stride: int) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


class PoolBN(nn.Module):
    """A 3x3 pool followed by BatchNorm (eps 1e-3): the official binary layout's pools."""

    def __init__(self, kind: str, C: int, stride: int, affine: bool = True) -> None:
        super().__init__()
        self.pool = _pool(kind, stride)
        self.bn = nn.BatchNorm2d(C, eps=BN_EPS, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.pool(x))


def pool_op(kind: str, C: int, stride: int, affine: bool, binary: bool) -> nn.Module:
    """Binary layout: PoolBN (official). Real: the bare pool (DARTS; its search model adds a
    BN with affine=False on every pool edge)."""
    return PoolBN(kind, C, stride, affine) if binary else _pool(kind, stride)


OpFactory = Callable[[int, int, bool, bool], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine, binary: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine, binary: pool_op("max", C, stride, affine, binary),
    "avg_pool_3x3": lambda C, stride, affine, binary: pool_op("avg", C, stride, affine, binary),
    "skip_connect": lambda C, stride, affine, binary: (
        Identity() if stride == 1 else FactorizedReduce(C, C, affine, binary)),
    "sep_conv_3x3": lambda C, stride, affine, binary: SepConv(C, C, 3, stride, 1, affine, binary),
    "sep_conv_5x5": lambda C, stride, affine, binary: SepConv(C, C, 5, stride, 2, affine, binary),
    "dil_conv_3x3": lambda C, stride, affine, binary: DilConv(C, C, 3, stride, 2, 2, affine,
                                                              binary),
    "dil_conv_5x5": lambda C, stride, affine, binary: DilConv(C, C, 5, stride, 4, 2, affine,
                                                              binary),
}
assert tuple(OPS) == PRIMITIVES, "OPS must list the ops in PRIMITIVES order"


def create_op(name: str, C: int, stride: int, *, affine: bool = True,
              binary: bool = False) -> nn.Module:
    """Build the candidate op ``name`` (one of PRIMITIVES) on C channels."""
    try:
        factory = OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; expected one of {', '.join(PRIMITIVES)}") from None
    return factory(C, stride, affine, binary)
