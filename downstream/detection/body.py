"""The harness backbone as a detector body: build it, initialise it from a retrained
classification checkpoint, probe its channels and strides, freeze its first stages.

Plain torch (no mmdet import), so the runner can probe a backbone before mmdet builds anything.

The classification checkpoint (``harness train``'s ``model.pt``) is read and copied by
``backbones.checkpoint`` (the one reader of that file): the classifier is always skipped; when
the detector uses another stem than the checkpoint (CIFAR stem for 32-px classification,
ImageNet stem for detection), the stem-dependent tensors are skipped with one logged line;
anything else that is missing or mismatched raises ``CheckpointError``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from backbones.checkpoint import HEAD_ATTRS, downstream_kwargs, init_from_classifier
from backbones.genotypes import Genotype
from backbones.registry import BackboneContractError, check_feature_backbone, create_backbone

log = logging.getLogger(__name__)

def resolve_backbone_kwargs(backbone: str, backbone_kwargs: Mapping[str, Any] | None = None,
                            init_checkpoint: str | os.PathLike[str] | None = None
                            ) -> dict[str, Any]:
    """The kwargs the detector body is built with: with a checkpoint, its arch record's
    (``backbones.checkpoint.downstream_kwargs``), ``backbone_kwargs`` overriding them."""
    if init_checkpoint is None:
        return dict(backbone_kwargs or {})
    return downstream_kwargs(backbone, init_checkpoint, backbone_kwargs)


def _materialize(kwargs: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Config-friendly kwargs -> factory kwargs (a genotype given as a dict becomes a Genotype)."""
    out = dict(kwargs)
    if isinstance(out.get("genotype"), Mapping):
        out["genotype"] = Genotype.from_dict(dict(out["genotype"]), f"{source}: genotype")
    if isinstance(out.get("out_indices"), list):
        out["out_indices"] = tuple(out["out_indices"])
    return out


def build_body(backbone: str, kwargs: Mapping[str, Any] | None = None,
               out_indices: Sequence[int] | None = None) -> nn.Module:
    """create_backbone + contract check; the classification head is replaced by Identity
    (a detector never uses it, and unused parameters break DistributedDataParallel)."""
    kw = _materialize(kwargs or {}, f"backbone {backbone!r}")
    if out_indices is not None:
        kw["out_indices"] = tuple(out_indices)
    body = create_backbone(backbone, **kw)
    check_feature_backbone(body, backbone)
    for attr in HEAD_ATTRS:
        if isinstance(getattr(body, attr, None), nn.Linear):
            setattr(body, attr, nn.Identity())
    return body






def init_from_checkpoint(body: nn.Module, path: str | os.PathLike[str], *,
                         logger: Callable[[str], None] | None = None) -> dict[str, int]:
    """Copy a classification checkpoint into ``body`` (``backbones.checkpoint.init_from_classifier``:
    the head skipped, the stem-dependent tensors skipped when the stems differ, anything else
    that does not match is an error). Returns counts: loaded, skipped_classifier, skipped_stem."""
    say = logger or log.info
    report = init_from_classifier(body, path, log=say)
    say(f"init from {report.summary()}")
    return report.counts()


@dataclass(frozen=True)
class BackboneInfo:
    out_channels: list[int]
    strides: list[int]


def probe_backbone(backbone: str, kwargs: Mapping[str, Any] | None = None,
                   out_indices: Sequence[int] | None = None, *, size: int = 128,
                   in_channels: int = 3) -> BackboneInfo:
    """Build the body once and read its feature maps' channels and strides (a dummy forward):
    what a neck (``in_channels``) and the anchor generators / RoI extractors (strides) need."""
    return probe_body(build_body(backbone, kwargs, out_indices), backbone, size=size,
                      in_channels=in_channels)


def probe_body(body: nn.Module, backbone: str = "<backbone>", *, size: int = 128,
               in_channels: int = 3) -> BackboneInfo:
    """``probe_backbone`` for an already built body (left in eval mode)."""
    body.eval()
    with torch.no_grad():
        feats = body.forward_features(torch.zeros(1, in_channels, size, size))
    channels = [int(f.shape[1]) for f in feats]
    declared = list(getattr(body, "out_channels"))
    if channels != declared:
        raise TypeError(f"backbone {backbone!r} declares out_channels {declared} but "
                        f"forward_features returns maps with channels {channels}")
    if any(f.dim() != 4 for f in feats):
        raise BackboneContractError(f"backbone {backbone!r}: forward_features returns tensors "
                                    f"of shapes {[tuple(f.shape) for f in feats]}; a detector "
                                    f"needs feature maps (N, C, H, W)")
    strides = [max(1, round(size / f.shape[-1])) for f in feats]
    if any(b <= a for a, b in zip(strides, strides[1:])):
        raise BackboneContractError(
            f"backbone {backbone!r}: its feature maps have strides {strides}; a detector's neck "
            f"needs maps at increasing strides (a CNN, or a hierarchical transformer such as "
            f"swin or convnext: a plain ViT has one stride)")
    return BackboneInfo(channels, strides)


def stage_groups(body: nn.Module) -> list[list[nn.Module]]:
    """Module groups that ``frozen_stages=k`` freezes the first k+1 of: [stem, stage 1, ...].

    A backbone may define ``stage_modules()``; for a NASNetwork the stages are the runs of
    cells ending at each output index.
    """
    if hasattr(body, "stage_modules"):
        return [[m] for m in body.stage_modules()]
    if hasattr(body, "cells") and hasattr(body, "stem0"):
        stem = [m for m in (body.stem0, getattr(body, "stem1", None)) if m is not None]
        groups: list[list[nn.Module]] = [stem]
        start = 0
        for idx in body.out_indices:
            groups.append(list(body.cells[start:idx + 1]))
            start = idx + 1
        return groups
    raise TypeError(f"frozen_stages needs a backbone with stage_modules() (a list [stem, "
                    f"stage 1, ...]); {type(body).__name__} has none")
