"""Initialise a downstream backbone from a retrained classification checkpoint.

Shared by the re-ID and detection adapters. The checkpoint is the one the ``train`` stage writes
(e.g. ``runs/<profile>/train/<method>/seed<k>/model.pt``)::

    {"model": <state_dict of the classification network>,
     "arch": {"backbone": "nas",
              "kwargs": {"genotype": <Genotype.to_dict()>, "C": int, "layers": int,
                         "stem": "cifar" | "imagenet", "num_classes": int}}}

It is read with ``safe_torch_load`` (``weights_only=True``: tensors and primitives only).

Rules (``init_backbone_from_classifier``):
  * every tensor of the backbone is loaded from the checkpoint, except
  * the classifier (``classifier.*``), which is always skipped (the task has other classes), and
  * when the downstream backbone uses a different stem than the checkpoint (e.g. a CIFAR-trained
    network reused with the ImageNet stem), the stem-dependent tensors, skipped with one logged
    line: ``stem0.*``, ``stem1.*`` and the preprocessing of the two cells that read the stem
    output (``cells.0.pre0``, ``cells.0.pre1``, ``cells.1.pre0``; their input width is the stem's);
  * any other mismatch (a tensor missing on either side, or of another shape) raises
    ``CheckpointError`` naming the first such tensor and both shapes.

``backbone_kwargs_for(backbone, checkpoint_arch, user_kwargs)`` rebuilds the architecture from
the checkpoint's ``arch`` (the user's kwargs override it; a conflicting genotype is an error).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from backbones.atomic import CheckpointError, safe_torch_load
from backbones.genotypes import Genotype, GenotypeError
from backbones.network import NASNetwork

CLASSIFIER_PREFIXES: tuple[str, ...] = ("classifier.",)


@dataclass
class ClassifierCheckpoint:
    path: str
    state: dict[str, Tensor]
    arch: dict[str, Any]

    @property
    def backbone(self) -> str | None:
        return self.arch.get("backbone")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.arch.get("kwargs") or {})

    @property
    def stem(self) -> str | None:
        return self.kwargs.get("stem")


@dataclass
class InitReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)
    skipped_stem: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.source}: loaded {len(self.loaded)} tensors, skipped "
                f"{len(self.skipped_classifier)} classifier and {len(self.skipped_stem)} "
                f"stem-dependent tensors")


def load_classifier_checkpoint(path: str | os.PathLike[str]) -> ClassifierCheckpoint:
    """Read and validate the train stage's checkpoint (weights-only)."""
    src = str(path)
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        got = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{src}: expected a dict with 'model' (a state_dict) and 'arch' "
                              f"(the train stage's format); got {got}")
    state = dict(ckpt["model"])
    bad = next((k for k, v in state.items() if not isinstance(k, str)
                or not isinstance(v, Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{src}: 'model' entry {bad!r} is not a tensor")
    if state and all(k.startswith("module.") for k in state):  # saved from (D)DP
        state = {k[len("module."):]: v for k, v in state.items()}
    arch = ckpt.get("arch") or {}
    if not isinstance(arch, Mapping) or not isinstance(arch.get("kwargs", {}), Mapping):
        raise CheckpointError(f"{src}: 'arch' must be a dict with 'backbone' and 'kwargs'")
    return ClassifierCheckpoint(src, state, dict(arch))


def backbone_kwargs_for(backbone: str, ckpt: ClassifierCheckpoint,
                        user_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Backbone kwargs rebuilding the checkpoint's architecture, overridden by ``user_kwargs``.

    The checkpoint's kwargs are used only when ``backbone`` is the checkpoint's backbone name;
    ``num_classes`` is dropped (the classifier is not reused). A user genotype that differs from
    the checkpoint's raises CheckpointError (parameter-free ops could otherwise load silently).
    """
    user = dict(user_kwargs or {})
    if ckpt.backbone != backbone:
        return user
    kwargs = ckpt.kwargs
    kwargs.pop("num_classes", None)
    if "genotype" in kwargs and isinstance(kwargs["genotype"], Mapping):
        try:
            kwargs["genotype"] = Genotype.from_dict(dict(kwargs["genotype"]),
                                                    f"{ckpt.path}: arch.kwargs.genotype")
        except GenotypeError as exc:
            raise CheckpointError(str(exc)) from None
    if "genotype" in user and "genotype" in kwargs:
        from backbones.registry import resolve_genotype
        if resolve_genotype(user["genotype"]) != kwargs["genotype"]:
            raise CheckpointError(f"{ckpt.path}: the checkpoint's genotype differs from the "
                                  f"requested genotype {str(user['genotype'])!r}")
    kwargs.update(user)
    return kwargs


def stem_dependent_prefixes(backbone: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes whose shapes depend on the stem (a backbone may define its own)."""
    own = getattr(backbone, "stem_dependent_prefixes", None)
    if own is not None:
        return tuple(own() if callable(own) else own)
    if isinstance(backbone, NASNetwork):
        prefixes = ["stem0.", "stem1.", "cells.0.pre0.", "cells.0.pre1."]
        if len(backbone.cells) > 1:
            prefixes.append("cells.1.pre0.")
        return tuple(prefixes)
    return ("stem.", "stem0.", "stem1.")


def init_backbone_from_classifier(
        backbone: nn.Module, checkpoint: str | os.PathLike[str] | ClassifierCheckpoint, *,
        log: Callable[[str], None] = print,
        classifier_prefixes: tuple[str, ...] = CLASSIFIER_PREFIXES) -> InitReport:
    """Copy the checkpoint's tensors into ``backbone`` following the module docstring's rules."""
    ckpt = (checkpoint if isinstance(checkpoint, ClassifierCheckpoint)
            else load_classifier_checkpoint(checkpoint))
    report = InitReport(ckpt.path)
    model_stem = getattr(backbone, "stem_kind", None)
    skip_stem = bool(ckpt.stem and model_stem and ckpt.stem != model_stem)
    stem_prefixes = stem_dependent_prefixes(backbone) if skip_stem else ()

    def skipped(key: str) -> bool:
        if key.startswith(classifier_prefixes):
            report.skipped_classifier.append(key)
            return True
        if key.startswith(stem_prefixes):
            report.skipped_stem.append(key)
            return True
        return False

    own = backbone.state_dict()
    new_state: dict[str, Tensor] = {}
    for key, value in ckpt.state.items():
        if skipped(key):
            continue
        if key not in own:
            raise CheckpointError(f"{ckpt.path}: checkpoint tensor {key!r} "
                                  f"{tuple(value.shape)} does not exist in the backbone "
                                  f"(checkpoint for a different architecture?)")
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{ckpt.path}: tensor {key!r} has shape {tuple(value.shape)} "
                                  f"in the checkpoint but {tuple(own[key].shape)} in the "
                                  f"backbone (checkpoint for a different architecture?)")
        new_state[key] = value
    for key in own:
        if key in new_state or key.startswith(classifier_prefixes) or key.startswith(stem_prefixes):
            continue
        raise CheckpointError(f"{ckpt.path}: checkpoint lacks backbone tensor {key!r} "
                              f"{tuple(own[key].shape)} (checkpoint for a different "
                              f"architecture?)")
    backbone.load_state_dict(new_state, strict=False)  # the skipped keys were checked above
    report.loaded = sorted(new_state)
    if skip_stem:
        parts = ", ".join(p.rstrip(".") for p in stem_prefixes)
        log(f"[init] {ckpt.path}: checkpoint stem {ckpt.stem!r} != backbone stem "
            f"{model_stem!r}: {len(report.skipped_stem)} stem-dependent tensors ({parts}) "
            f"keep their fresh initialisation")
    return report
