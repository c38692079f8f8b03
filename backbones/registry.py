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

import difflib
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from backbones.genotypes import PUBLISHED, Genotype

BackboneFactory = Callable[..., nn.Module]
_BACKBONES: dict[str, BackboneFactory] = {}
_GENOTYPES: dict[str, Genotype] = dict(PUBLISHED)


class UnknownBackboneError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@runtime_checkable
class FeatureBackbone(Protocol):
    out_channels: list[int]
    num_features: int

    def forward_features(self, x: Tensor) -> tuple[Tensor, ...]: ...

    def forward_embedding(self, x: Tensor) -> Tensor: ...


def register_backbone(name: str | None = None) -> Callable[[BackboneFactory], BackboneFactory]:
    def deco(fn: BackboneFactory) -> BackboneFactory:
        key = name or fn.__name__
        if key in _BACKBONES and _BACKBONES[key] is not fn:
            raise ValueError(f"backbone {key!r} is already registered")
        _BACKBONES[key] = fn
        return fn
    return deco


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def register_genotype(name: str, genotype: Genotype) -> None:
    _GENOTYPES[name] = genotype


def resolve_genotype(spec: Genotype | str | os.PathLike[str]) -> Genotype:
    """A Genotype, the name of a registered one, or a path to a genotype JSON file."""
    if isinstance(spec, Genotype):
        return spec
    if str(spec) in _GENOTYPES:
        return _GENOTYPES[str(spec)]
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return Genotype.load(path)
    close = difflib.get_close_matches(str(spec), list(_GENOTYPES), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownBackboneError(f"unknown genotype {str(spec)!r}: expected a genotype JSON path "
                               f"or one of {sorted(_GENOTYPES)}{hint}")


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


def registered_factory(name: str) -> BackboneFactory | None:
    """The factory registered under ``name``, or None: never imports a module named by
    ``name`` (for names read from files, see ``backbones.checkpoint``)."""
    _ensure_builtin_registered()
    return _BACKBONES.get(name)


def backbone_factory(name: str) -> BackboneFactory:
    """The factory behind a backbone name (registered, or 'package.module:function')."""
    _ensure_builtin_registered()
    if ":" in name:
        return _load_user_factory(name)
    if name not in _BACKBONES:
        raise UnknownBackboneError(f"unknown backbone {name!r}: expected one of "
                                   f"{list_backbones()} or 'package.module:function'")
    return _BACKBONES[name]


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone, or a user one given as ``module:function``."""
    _ensure_builtin_registered()
    if ":" in name:
        model = _load_user_factory(name)(**kwargs)
    elif name in _BACKBONES:
        model = _BACKBONES[name](**kwargs)
    else:
        close = difflib.get_close_matches(name, list(_BACKBONES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownBackboneError(f"unknown backbone {name!r}: expected one of "
                                   f"{list_backbones()} or 'package.module:function'{hint}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"backbone {name!r} returned {type(model).__name__}, expected nn.Module")
    return model


def check_feature_backbone(model: nn.Module, name: str) -> FeatureBackbone:
    """Fail early, naming the missing attribute, when a user backbone breaks the contract."""
    missing = [a for a in ("forward_features", "forward_embedding", "out_channels",
                           "num_features") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"backbone {name!r} lacks {missing}: a harness backbone must provide "
                        f"forward_features(x) -> tuple, out_channels, forward_embedding(x) and "
                        f"num_features (see backbones/registry.py)")
    return model  # type: ignore[return-value]


_builtin_done = False


def _ensure_builtin_registered() -> None:
    """Import the modules that register the built-in backbones (avoids import cycles)."""
    global _builtin_done
    if not _builtin_done:
        _builtin_done = True
        importlib.import_module("backbones.zoo")
