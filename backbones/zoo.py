"""Built-in backbones: NAS networks from genotypes, and the hand-designed 1-bit networks
(Bi-Real ResNet-18, ReActNet-A)."""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from backbones.genotypes import PUBLISHED, Genotype
from backbones.network import NASNetwork
from backbones.registry import register_backbone, resolve_genotype

import backbones.ecosystem  # noqa: F401,E402 - registers the prefixes timm: and torchvision:
import backbones.reactnet  # noqa: F401,E402 - registers "reactnet_a"
import backbones.resnet_bireal  # noqa: F401,E402 - registers "bireal_resnet18"


@register_backbone("nas")
def nas(genotype: Genotype | str | os.PathLike[str] = "darts_v2", **kwargs: Any) -> nn.Module:
    """A network of discrete cells; ``genotype`` is a Genotype, a registered name or a JSON path."""
    return NASNetwork(resolve_genotype(genotype), **kwargs)


def _published_factory(name: str):
    def factory(**kwargs: Any) -> nn.Module:
        return NASNetwork(resolve_genotype(name), **kwargs)
    factory.__name__ = name
    factory.__doc__ = f"The published cell {name!r} ({PUBLISHED[name].meta['source']}), binarized."
    return factory


# darts_v2, dcpnas_l, pcdarts_cifar, pcdarts_imagenet: usable wherever a backbone name is
for _name in PUBLISHED:
    register_backbone(_name)(_published_factory(_name))
