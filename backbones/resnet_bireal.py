"""A hand-designed 1-bit ResNet-18 in the Bi-Real style (Liu et al., ECCV 2018).

The reference the searched cells are compared against:
- real-valued first conv (+ BN, + max-pool for the ImageNet stem) and real last FC;
- every 3x3 conv of the basic blocks is binary (sign activations with the Bi-Real gradient,
  per-channel scaled sign weights: ``backbones.binary.BinaryConv2d``) and has its own
  real-valued shortcut around it: ``out = BN(BinaryConv(x)) + shortcut(x)``;
- the shortcut of a downsampling conv is AvgPool(2) + real 1x1 conv + BN (Bi-Real's
  ``downsample``); ceil-mode pooling keeps odd feature sizes aligned with the stride-2 conv.

ResNet-18 layout: 4 stages of 2 basic blocks (= 4 binary convs) with ``width``, 2w, 4w, 8w
channels (``width=64`` is the paper network). ``forward_features`` returns the outputs of the
stages listed in ``out_indices`` (default: all 4; strides 4/8/16/32 with the ImageNet stem,
1/2/4/8 with the CIFAR stem) with their channels in ``out_channels``.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from backbones.binary import BinaryConv2d, weight_binarizer
from backbones.registry import register_backbone
from backbones.staged import StagedBackbone, select_out_indices

STAGE_BLOCKS = (2, 2, 2, 2)  # ResNet-18


class BiRealConv(nn.Module):
    """One binary 3x3 conv with its own real-valued shortcut (Bi-Real's basic unit)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, binary: bool = True) -> None:
        super().__init__()
        if binary:
            self.conv: nn.Module = BinaryConv2d(c_in, c_out, 3, stride, 1, bias=False,
                                                binary_input=True)
        else:  # real-valued reference with the same topology
            self.conv = nn.Sequential(nn.ReLU(inplace=False),
                                      nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False))
        self.bn = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            pool: nn.Module = (nn.AvgPool2d(2, stride=stride, ceil_mode=True,
                                            count_include_pad=False)
                               if stride != 1 else nn.Identity())
            self.downsample = nn.Sequential(pool, nn.Conv2d(c_in, c_out, 1, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.bn(self.conv(x)) + shortcut


class BasicBlock(nn.Module):
    """ResNet basic block: two Bi-Real units (each conv has its own shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int, binary: bool) -> None:
        super().__init__()
        self.unit1 = BiRealConv(c_in, c_out, stride, binary)
        self.unit2 = BiRealConv(c_out, c_out, 1, binary)

    def forward(self, x: Tensor) -> Tensor:
        return self.unit2(self.unit1(x))


def _stem(kind: str, in_channels: int, width: int) -> nn.Sequential:
    if kind == "imagenet":  # Bi-Real: 7x7/2 conv, BN, 3x3/2 max-pool (stride 4)
        return nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                             nn.BatchNorm2d(width), nn.MaxPool2d(3, 2, 1))
    if kind == "cifar":  # 3x3/1 conv, BN (stride 1)
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                             nn.BatchNorm2d(width))
    raise ValueError(f"unknown stem {kind!r}; expected 'cifar' or 'imagenet'")


class BiRealResNet(StagedBackbone):
    """Bi-Real ResNet (18 by default) honouring the FeatureBackbone contract."""

    def __init__(self, num_classes: int = 10, *, width: int = 64, stem: str = "imagenet",
                 in_channels: int = 3, binary: bool = True,
                 blocks: Sequence[int] = STAGE_BLOCKS,
                 out_indices: Sequence[int] | None = None,
                 binarizer: str | None = None) -> None:
        super().__init__()
        with weight_binarizer(binarizer):
            self._build(num_classes, width, stem, in_channels, binary, blocks, out_indices)

    def _build(self, num_classes: int, width: int, stem: str, in_channels: int, binary: bool,
               blocks: Sequence[int], out_indices: Sequence[int] | None) -> None:
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.stem_kind = stem
        self.binary = binary
        self.stem = _stem(stem, in_channels, width)
        self.stage_channels = [width * 2 ** i for i in range(len(blocks))]
        c_in = width
        stages = []
        for i, (n, c_out) in enumerate(zip(blocks, self.stage_channels)):
            layer = [BasicBlock(c_in, c_out, 1 if i == 0 else 2, binary)]
            layer += [BasicBlock(c_out, c_out, 1, binary) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layer))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        n_stages = len(self.stages)
        self.out_indices = select_out_indices(n_stages, out_indices, range(n_stages))
        self.out_channels = [self.stage_channels[i] for i in self.out_indices]
        self.num_features = self.stage_channels[-1]
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def stem_dependent_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes whose shapes depend on the stem (its first conv and BN)."""
        return ("stem.",)


@register_backbone("bireal_resnet18")
def bireal_resnet18(num_classes: int = 10, *, width: int = 64, stem: str = "imagenet",
                    out_indices: Sequence[int] | None = None, binary: bool = True,
                    in_channels: int = 3, binarizer: str | None = None) -> nn.Module:
    """Bi-Real ResNet-18: real stem and FC, binary 3x3 convs each with a real shortcut."""
    return BiRealResNet(num_classes, width=width, stem=stem, in_channels=in_channels,
                        binary=binary, blocks=STAGE_BLOCKS, out_indices=out_indices,
                        binarizer=binarizer)
