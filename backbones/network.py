"""The final network built from a genotype (retraining, and the backbone for downstream tasks).

``NASNetwork`` stacks ``layers`` discrete cells (reductions at 1/3 and 2/3 of the depth) after a
CIFAR stem (stride 1) or an ImageNet stem (stride 8). ``forward`` returns logits;
``forward_features`` returns the feature maps of the cells listed in ``out_indices`` (by default
the last cell of each resolution), with their channels in ``out_channels``, so a detector neck
can be configured from the network alone.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from backbones.binary import weight_binarizer
from backbones.genotypes import Genotype
from backbones.operations import FactorizedReduce, ReLUConvBN, create_op


class Cell(nn.Module):
    def __init__(self, genotype: Genotype, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, binary: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0 = (FactorizedReduce(C_pp, C, binary=binary) if reduction_prev
                     else ReLUConvBN(C_pp, C, 1, 1, 0, binary=binary))
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0, binary=binary)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.indices = [idx for _, idx in edges]
        self.ops = nn.ModuleList(
            create_op(name, C, 2 if reduction and idx < 2 else 1, binary=binary)
            for name, idx in edges)
        self.steps = len(edges) // 2
        self.multiplier = len(self.concat)

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(self.steps):
            a, b = 2 * i, 2 * i + 1
            states.append(self.ops[a](states[self.indices[a]])
                          + self.ops[b](states[self.indices[b]]))
        return torch.cat([states[i] for i in self.concat], dim=1)


def make_stem(kind: str, in_channels: int, c_out: int) -> tuple[nn.Module, nn.Module | None]:
    """CIFAR stem: one 3x3 conv. ImageNet stem (DARTS): two stride-2 stages, then one more."""
    if kind == "cifar":
        return nn.Sequential(nn.Conv2d(in_channels, c_out, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c_out)), None
    if kind == "imagenet":
        stem0 = nn.Sequential(
            nn.Conv2d(in_channels, c_out // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out // 2), nn.ReLU(inplace=True),
            nn.Conv2d(c_out // 2, c_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out))
        stem1 = nn.Sequential(nn.ReLU(inplace=True),
                              nn.Conv2d(c_out, c_out, 3, stride=2, padding=1, bias=False),
                              nn.BatchNorm2d(c_out))
        return stem0, stem1
    raise ValueError(f"unknown stem {kind!r}; expected 'cifar' or 'imagenet'")


class NASNetwork(nn.Module):
    """A 1-bit (``binary=True``) or real network of discrete cells from a genotype.

    ``binarizer`` picks the weight binarizer of every binary conv (``backbones.binary``;
    None: the enclosing ``weight_binarizer`` block's, ``official`` outside any)."""

    def __init__(self, genotype: Genotype, C: int = 36, num_classes: int = 10, layers: int = 20,
                 *, stem: str = "cifar", binary: bool = True, in_channels: int = 3,
                 stem_multiplier: int = 3, out_indices: Sequence[int] | None = None,
                 binarizer: str | None = None) -> None:
        super().__init__()
        with weight_binarizer(binarizer):
            self._build(genotype, C, num_classes, layers, stem, binary, in_channels,
                        stem_multiplier, out_indices)

    def _build(self, genotype: Genotype, C: int, num_classes: int, layers: int, stem: str,
               binary: bool, in_channels: int, stem_multiplier: int,
               out_indices: Sequence[int] | None) -> None:
        self.genotype = genotype
        self.stem_kind = stem
        self.binary = binary
        if stem == "cifar":
            c_curr = stem_multiplier * C
            self.stem0, self.stem1 = make_stem("cifar", in_channels, c_curr)
            C_pp, C_p = c_curr, c_curr
            reduction_prev = False
        else:
            self.stem0, self.stem1 = make_stem("imagenet", in_channels, C)
            C_pp, C_p = C, C
            reduction_prev = True  # stem1 halves the resolution relative to stem0
        c_curr = C
        self.cells = nn.ModuleList()
        self.cell_channels: list[int] = []
        reductions = {layers // 3, 2 * layers // 3} if layers >= 3 else set()
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cell = Cell(genotype, C_pp, C_p, c_curr, reduction, reduction_prev, binary)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * c_curr
            self.cell_channels.append(C_p)
        if out_indices is None:  # the last cell before each reduction, and the last cell
            out_indices = sorted({i - 1 for i in reductions if i > 0} | {layers - 1})
        bad = [i for i in out_indices if not -layers <= i < layers]
        if bad:
            raise ValueError(f"out_indices {bad} out of range for {layers} cells")
        self.out_indices = tuple(i % layers for i in out_indices)
        self.out_channels = [self.cell_channels[i] for i in self.out_indices]
        self.num_features = C_p
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def _cells(self, x: Tensor) -> list[Tensor]:
        if self.stem1 is None:
            s0 = s1 = self.stem0(x)
        else:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        outs = []
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
            outs.append(s1)
        return outs

    def stem_dependent_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes whose shapes depend on the stem: the stem, and the
        preprocessing of the cells that read its outputs (their input width is the stem's)."""
        prefixes = ["stem0.", "stem1.", "cells.0.pre0.", "cells.0.pre1."]
        if len(self.cells) > 1:
            prefixes.append("cells.1.pre0.")
        return tuple(prefixes)

    def forward_features(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = self._cells(x)
        return tuple(outs[i] for i in self.out_indices)

    def forward_embedding(self, x: Tensor) -> Tensor:
        """Global-pooled final feature vector (num_features), used by re-ID."""
        return self.global_pooling(self._cells(x)[-1]).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_embedding(x))
