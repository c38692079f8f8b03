"""Built-in backbones: NAS networks from genotypes, and the hand-designed 1-bit ResNet-18."""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from backbones.genotypes import Genotype
from backbones.network import NASNetwork
from backbones.registry import register_backbone, resolve_genotype

import backbones.resnet_bireal  # noqa: F401,E402 - registers "bireal_resnet18"


@register_backbone("nas")
def nas(genotype: Genotype | str | os.PathLike[str] = "darts_v2", **kwargs: Any) -> nn.Module:
    """A network of discrete cells; ``genotype`` is a Genotype, a registered name or a JSON path."""
    return NASNetwork(resolve_genotype(genotype), **kwargs)


@register_backbone("darts_v2")
def darts_v2(**kwargs: Any) -> nn.Module:
    """The published DARTS-V2 cell, binarized: a reference cell from outside the 1-bit search."""
    return NASNetwork(resolve_genotype("darts_v2"), **kwargs)
