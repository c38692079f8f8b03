"""The 8 candidate ops of the DARTS space, each in a real-valued and a 1-bit variant.

Real ops are DARTS' (ReLU -> conv -> BN). Binary ops follow the official DCP-NAS layout
(BN -> binary conv -> BN -> PReLU): depthwise convs binarize weights only, pointwise convs
binarize weights and activations. ``OPS[name](C, stride, affine, binary)`` builds one op.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from backbones.binary import BinaryConv2d

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


def conv_unit(c_in: int, c_out: int, kernel: int, stride: int, padding: int, *,
              dilation: int = 1, groups: int = 1, affine: bool = True,
              binary: bool = False) -> nn.Sequential:
    """One conv with its normalisation and activation, real or binary."""
    if not binary:
        return nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, groups=groups,
                      bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )
    depthwise = groups > 1
    return nn.Sequential(
        nn.BatchNorm2d(c_in, affine=affine),
        BinaryConv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, groups=groups,
                     bias=False, binary_input=not depthwise),
        nn.BatchNorm2d(c_out, affine=affine),
        nn.PReLU(c_out),
    )


class ReLUConvBN(nn.Module):
    """Preprocessing 1x1 conv of a cell (binary variant when ``binary``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, binary: bool = False) -> None:
        super().__init__()
        self.op = conv_unit(c_in, c_out, kernel, stride, padding, affine=affine, binary=binary)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """Dilated depthwise conv followed by a pointwise conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True, binary: bool = False) -> None:
        super().__init__()
        if binary:
            self.op = nn.Sequential(
                conv_unit(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in,
                          affine=affine, binary=True),
                conv_unit(c_in, c_out, 1, 1, 0, affine=affine, binary=True),
            )
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
    """Halve the resolution with two offset stride-2 1x1 convs (DARTS)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, binary: bool = False) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of channels, got {c_out}")
        conv = BinaryConv2d if binary else nn.Conv2d
        self.binary = binary
        self.pre = nn.BatchNorm2d(c_in, affine=affine) if binary else nn.ReLU(inplace=False)
        self.conv_1 = conv(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = conv(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)
        self.act = nn.PReLU(c_out) if binary else Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre(x)
        a = self.conv_1(x)
        # the second path sees the input shifted by one pixel; padding keeps odd sizes aligned
        b = self.conv_2(nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)))
        return self.act(self.bn(torch.cat([a, b], dim=1)))


def _pool(kind: str, stride: int) -> nn.Module:
    """Pools have no weights, so their real and binary variants are the same op."""
    if kind == "max":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


OpFactory = Callable[[int, int, bool, bool], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine, binary: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine, binary: _pool("max", stride),
    "avg_pool_3x3": lambda C, stride, affine, binary: _pool("avg", stride),
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
