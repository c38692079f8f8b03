"""Backbone registry (timm-style): ``register_backbone`` a factory, ``create_backbone`` by name.

Every backbone honours one contract (``FeatureBackbone``), which is what the classification
trainer, the mmdet adapter and the torchreid adapter rely on:
  forward(x) -> logits; forward_features(x) -> tuple of feature maps with ``out_channels``;
  forward_embedding(x) -> pooled vector of size ``num_features``.
A user backbone is named ``"package.module:function"``; the function gets the same kwargs. That
form imports and runs the named module: it is accepted from the command line and params.yaml
only, never from a checkpoint (``backbones.checkpoint``).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from backbones.genotypes import PUBLISHED, Genotype
from backbones.names import Registry, UnknownNameError

BackboneFactory = Callable[..., nn.Module]


class UnknownBackboneError(UnknownNameError):
    """An unknown backbone or genotype name."""


class BackboneContractError(ValueError):
    """A backbone that cannot serve where it is asked to (a missing contract attribute, feature
    maps a detector cannot use): one line naming the backbone and what was expected."""


#: backbone factories by name; the built-ins (zoo.py) register on the first lookup
BACKBONES: Registry[BackboneFactory] = Registry("backbone", UnknownBackboneError,
                                                builtins=("backbones.zoo",))
#: genotypes by name: the published cells, and any a user registers
GENOTYPES: Registry[Genotype] = Registry("genotype", UnknownBackboneError)
for _name, _genotype in PUBLISHED.items():
    GENOTYPES.register(_name)(_genotype)
#: the other forms a backbone name may take (the last: command line and params.yaml only)
USER_FORM = "'timm:NAME', 'torchvision:NAME' or 'package.module:function'"


@runtime_checkable
class FeatureBackbone(Protocol):
    out_channels: list[int]
    num_features: int

    def forward_features(self, x: Tensor) -> tuple[Tensor, ...]: ...

    def forward_embedding(self, x: Tensor) -> Tensor: ...


def register_backbone(name: str | None = None) -> Callable[[BackboneFactory], BackboneFactory]:
    return BACKBONES.register(name)


def list_backbones() -> list[str]:
    return BACKBONES.names()


def register_genotype(name: str, genotype: Genotype) -> None:
    GENOTYPES.register(name)(genotype)


def resolve_genotype(spec: Genotype | str | os.PathLike[str]) -> Genotype:
    """A Genotype, the name of a registered one, or a path to a genotype JSON file."""
    if isinstance(spec, Genotype):
        return spec
    if str(spec) in GENOTYPES:
        return GENOTYPES.get(str(spec))
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return Genotype.load(path)
    return GENOTYPES.get(str(spec), also="a genotype JSON path")


def _load_user_factory(spec: str) -> BackboneFactory:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownBackboneError(f"backbone {spec!r}: cannot import module {module_name!r} "
                                   f"({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UnknownBackboneError(f"backbone {spec!r}: module {module_name!r} has no callable "
                                   f"{attr!r} (expected 'package.module:function')")
    return fn


#: model families of other libraries by prefix (``timm``, ``torchvision``): prefix -> (model
#: name -> factory); the built-ins (``backbones.ecosystem``) register them
PREFIXES: dict[str, Callable[[str], BackboneFactory]] = {}


def register_prefix(prefix: str, make: Callable[[str], BackboneFactory]) -> None:
    PREFIXES[prefix] = make


def prefixed_factory(name: str) -> BackboneFactory | None:
    """The factory of ``PREFIX:MODEL`` for a registered prefix (``timm:resnet18``), else None.
    ``PREFIX-MODEL`` (``timm-resnet18``, the run-folder spelling) names the same model, so that
    a pipeline list in params.yaml, whose entries dvc.yaml turns into folder paths, can name it."""
    sep = ":" if ":" in name else "-"
    prefix, found, model = name.partition(sep)
    if not found or not model or "." in prefix:
        return None
    BACKBONES.names()          # loads the built-ins, which register the prefixes
    make = PREFIXES.get(prefix)
    return None if make is None else make(model)


def registered_factory(name: str) -> BackboneFactory | None:
    """The factory registered under ``name`` (or a ``timm:`` / ``torchvision:`` model, looked up
    in those libraries' own registries), or None: never imports a module named by ``name``
    (for names read from files, see ``backbones.checkpoint``)."""
    return prefixed_factory(name) or BACKBONES.find(name)


def backbone_factory(name: str) -> BackboneFactory:
    """The factory behind a backbone name (registered, ``timm:NAME``, ``torchvision:NAME``, or
    'package.module:function')."""
    prefixed = prefixed_factory(name)
    if prefixed is not None:
        return prefixed
    return _load_user_factory(name) if ":" in name else BACKBONES.get(name, also=USER_FORM)


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone, or a user one given as ``module:function``."""
    model = backbone_factory(name)(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"backbone {name!r} returned {type(model).__name__}, expected nn.Module")
    return model


def check_feature_backbone(model: nn.Module, name: str) -> FeatureBackbone:
    """Fail early, naming the missing attribute, when a user backbone breaks the contract."""
    missing = [a for a in ("forward_features", "forward_embedding", "out_channels",
                           "num_features") if not hasattr(model, a)]
    if missing:
        raise BackboneContractError(
            f"backbone {name!r} lacks {missing}: a harness backbone must provide "
            f"forward_features(x) -> tuple, out_channels, forward_embedding(x) and num_features "
            f"(see backbones/registry.py)")
    return model  # type: ignore[return-value]
