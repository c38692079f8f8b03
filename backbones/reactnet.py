"""ReActNet-A (Liu et al., ECCV 2020): the MobileNetV1-based 1-bit network, as published.

Structure (the paper's Fig. 2 and the official code, liuzechun/ReActNet ``mobilenet/``):
- a real 3x3 stride-2 first conv (+ BN) to ``width`` channels and a real last FC;
- 13 blocks with output channels w x (2, 4, 4, 8, 8, 16 x6, 32, 32) (w = 32: 64 ... 1024); a
  block halves the resolution when its channels grow, except the first;
- a block is two binary convs, each with a parameter-free real shortcut:
  ``y = RPReLU(BN(BinConv3x3(RSign(x))) + shortcut(x))`` (shortcut: x, or AvgPool(2) when the
  3x3 conv has stride 2), then ``RPReLU(BN(BinConv1x1(RSign(y))) + y)``; a block that doubles
  the channels has two 1x1 convs of C -> C whose outputs (each plus y) are concatenated;
- RSign = a learnable per-channel shift, then sign (the Bi-Real ApproxSign gradient, the
  same as the official ``BinaryActivation``); RPReLU = shift, PReLU, shift;
- weights: sign(w) x mean|w| per output channel, straight-through clamp (``mean_abs``).

Counted the papers' way (``harness.costs.model_cost`` at 224x224, 1000 classes): 4.82 G BOPs,
0.012 G FLOPs, 87 M OPs, the figures of the paper's Table 3 (docs/papers.md).
``forward_features`` returns the last block of each resolution below the stem's: strides
4/8/16/32 (channels 4w, 8w, 16w, 32w) by default.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from backbones.binary import BinaryConv2d, weight_binarizer
from backbones.registry import register_backbone
from backbones.staged import StagedBackbone, select_out_indices

#: output channels of the 13 blocks, in units of ``width`` (the official stage_out_channel / 32)
BLOCK_WIDTHS = (2, 4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32)


class LearnableShift(nn.Module):
    """x + b with one learnable b per channel (RSign's and RPReLU's shifts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.shift


class RPReLU(nn.Sequential):
    """ReAct-PReLU: shift, PReLU (one slope per channel), shift."""

    def __init__(self, channels: int) -> None:
        super().__init__(LearnableShift(channels), nn.PReLU(channels), LearnableShift(channels))


def _binary_conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> BinaryConv2d:
    """A conv that binarizes its input (sign, Bi-Real gradient) and its weights: BOPs."""
    return BinaryConv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False, binary_input=True)


class ReActBlock(nn.Module):
    """One ReActNet-A block (see the module docstring)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_out not in (c_in, 2 * c_in):
            raise ValueError(f"a ReActNet block keeps or doubles its channels: {c_in} -> {c_out}")
        self.shift3x3 = LearnableShift(c_in)          # RSign's shift; the conv takes the sign
        self.conv3x3 = _binary_conv(c_in, c_in, 3, stride)
        self.bn3x3 = nn.BatchNorm2d(c_in)
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        self.act3x3 = RPReLU(c_in)
        copies = c_out // c_in                         # 2: the channels double by concatenation
        self.shift1x1 = LearnableShift(c_in)           # one RSign shared by the copies
        self.conv1x1 = nn.ModuleList(_binary_conv(c_in, c_in, 1) for _ in range(copies))
        self.bn1x1 = nn.ModuleList(nn.BatchNorm2d(c_in) for _ in range(copies))
        self.act1x1 = RPReLU(c_out)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act3x3(self.bn3x3(self.conv3x3(self.shift3x3(x))) + self.pool(x))
        z = self.shift1x1(y)
        outs = [bn(conv(z)) + y for conv, bn in zip(self.conv1x1, self.bn1x1)]
        return self.act1x1(outs[0] if len(outs) == 1 else torch.cat(outs, dim=1))


class ReActNetA(StagedBackbone):
    """ReActNet-A honouring the FeatureBackbone contract."""

    def __init__(self, num_classes: int = 1000, *, width: int = 32, stem: str = "imagenet",
                 in_channels: int = 3, out_indices: Sequence[int] | None = None,
                 binarizer: str = "mean_abs") -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}; expected 'cifar' or 'imagenet'")
        self.stem_kind = stem
        with weight_binarizer(binarizer):
            self._build(num_classes, width, stem, in_channels, out_indices)

    def _build(self, num_classes: int, width: int, stem: str, in_channels: int,
               out_indices: Sequence[int] | None) -> None:
        # imagenet: stride 2 (the paper's); cifar: stride 1 for 32x32 inputs
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2 if stem == "imagenet" else 1, 1, bias=False),
            nn.BatchNorm2d(width))
        stages: list[list[ReActBlock]] = [[]]
        self.stage_channels: list[int] = []
        c_in = width
        for i, k in enumerate(BLOCK_WIDTHS):
            c_out = k * width
            stride = 2 if c_out != c_in and i > 0 else 1
            if stride == 2:
                self.stage_channels.append(c_in)
                stages.append([])
            stages[-1].append(ReActBlock(c_in, c_out, stride))
            c_in = c_out
        self.stage_channels.append(c_in)
        #: 5 stages, one per resolution: strides 2, 4, 8, 16, 32 with the ImageNet stem
        self.stages = nn.ModuleList(nn.Sequential(*blocks) for blocks in stages)
        n = len(self.stages)
        self.out_indices = select_out_indices(n, out_indices, range(1, n))
        self.out_channels = [self.stage_channels[i] for i in self.out_indices]
        self.num_features = self.stage_channels[-1]
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def stem_dependent_prefixes(self) -> tuple[str, ...]:
        """None: both stems have the same shapes (only the first conv's stride differs)."""
        return ()


@register_backbone("reactnet_a")
def reactnet_a(num_classes: int = 1000, *, width: int = 32, stem: str = "imagenet",
               out_indices: Sequence[int] | None = None, in_channels: int = 3,
               binarizer: str = "mean_abs") -> nn.Module:
    """ReActNet-A (width 32 is the paper's network: 64 ... 1024 channels)."""
    return ReActNetA(num_classes, width=width, stem=stem, in_channels=in_channels,
                     out_indices=out_indices, binarizer=binarizer)
