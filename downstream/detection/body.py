"""The harness backbone as a detector body: build it, initialise it from a retrained
classification checkpoint, probe its channels and strides, freeze its first stages.

Plain torch (no mmdet import), so the runner can probe a backbone before mmdet builds anything.

Classification checkpoint format (written by ``harness train``)::

    {"model": state_dict,
     "arch": {"backbone": "nas", "kwargs": {"genotype": {...Genotype.to_dict()...}, "C": 36,
              "layers": 20, "stem": "cifar", "num_classes": 10}}}

Loading is weights-only (``backbones.atomic.safe_torch_load``). Every tensor whose name and
shape match is copied; the classifier is always skipped; when the detector uses another stem
than the checkpoint (CIFAR stem for 32-px classification, ImageNet stem for detection), the
stem-dependent tensors are skipped with one logged line; anything else that is missing or
mismatched raises ``CheckpointError`` naming the first such tensor and both shapes.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import backbones.resnet_bireal  # noqa: F401 - registers "bireal_resnet18"
from backbones.atomic import CheckpointError, safe_torch_load
from backbones.genotypes import Genotype
from backbones.registry import check_feature_backbone, create_backbone

log = logging.getLogger(__name__)

# heads of the classification network: never part of a detector backbone
CLASSIFIER_ATTRS = ("classifier", "fc")
CLASSIFIER_PREFIXES = tuple(f"{a}." for a in CLASSIFIER_ATTRS)


def _is_classifier(key: str) -> bool:
    return key.startswith(CLASSIFIER_PREFIXES)


@dataclass(frozen=True)
class ClassificationCheckpoint:
    path: Path
    state: dict[str, Tensor]
    backbone: str | None          # arch.backbone, None when the file has no "arch"
    kwargs: dict[str, Any]        # arch.kwargs


def read_classification_checkpoint(path: str | os.PathLike[str]) -> ClassificationCheckpoint:
    """Load (weights-only) and validate a retrained classification checkpoint."""
    path = Path(path)
    payload = safe_torch_load(path)
    if isinstance(payload, Mapping) and "model" in payload:
        state, arch = payload["model"], payload.get("arch")
    elif isinstance(payload, Mapping) and payload and all(
            isinstance(v, Tensor) for v in payload.values()):
        state, arch = payload, None  # a bare state_dict
    else:
        keys = sorted(payload)[:8] if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(f"{path}: expected a classification checkpoint "
                              f"{{'model': state_dict, 'arch': {{...}}}}, got {keys}")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: key 'model' is not a state_dict of tensors")
    backbone, kwargs = None, {}
    if arch is not None:
        if (not isinstance(arch, Mapping) or not isinstance(arch.get("backbone"), str)
                or not isinstance(arch.get("kwargs", {}), Mapping)):
            raise CheckpointError(f"{path}: key 'arch' must be {{'backbone': str, "
                                  f"'kwargs': dict}}, got {arch!r:.200}")
        backbone, kwargs = arch["backbone"], dict(arch.get("kwargs", {}))
    return ClassificationCheckpoint(path, dict(state), backbone, kwargs)


def resolve_backbone_kwargs(backbone: str, backbone_kwargs: Mapping[str, Any] | None = None,
                            init_checkpoint: str | os.PathLike[str] | None = None
                            ) -> dict[str, Any]:
    """The kwargs the detector body is built with.

    With a checkpoint trained for the same backbone name, its ``arch.kwargs`` (genotype, C,
    layers, ...) are the defaults and ``backbone_kwargs`` override them (typically ``stem``).
    """
    kwargs: dict[str, Any] = {}
    if init_checkpoint is not None:
        ckpt = read_classification_checkpoint(init_checkpoint)
        if ckpt.backbone is not None and ckpt.backbone != backbone:
            raise CheckpointError(f"{ckpt.path}: checkpoint was trained for backbone "
                                  f"{ckpt.backbone!r}, but the detector uses {backbone!r}")
        kwargs.update(ckpt.kwargs)
    kwargs.update(backbone_kwargs or {})
    return kwargs


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
    for attr in CLASSIFIER_ATTRS:
        if isinstance(getattr(body, attr, None), nn.Linear):
            setattr(body, attr, nn.Identity())
    return body


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if not _is_classifier(k)}


def _summarize(keys: Sequence[str], limit: int = 6) -> str:
    prefixes: list[str] = []
    for k in keys:
        p = k.rsplit(".", 2)[0] if k.count(".") >= 2 else k.split(".")[0]
        if p not in prefixes:
            prefixes.append(p)
    more = f", ... ({len(prefixes) - limit} more)" if len(prefixes) > limit else ""
    return ", ".join(f"{p}.*" for p in prefixes[:limit]) + more


def init_from_checkpoint(body: nn.Module, path: str | os.PathLike[str], *, backbone: str,
                         kwargs: Mapping[str, Any] | None = None,
                         logger: Callable[[str], None] | None = None) -> dict[str, int]:
    """Copy a classification checkpoint into ``body`` (see the module docstring).

    Returns counts: loaded, skipped_classifier, skipped_stem.
    """
    say = logger or log.info
    ckpt = read_classification_checkpoint(path)
    kwargs = dict(kwargs or {})
    own = _shapes(body)
    state = {k: v for k, v in ckpt.state.items() if not _is_classifier(k)}
    n_cls = len(ckpt.state) - len(state)

    ckpt_stem = ckpt.kwargs.get("stem")
    det_stem = kwargs.get("stem", getattr(body, "stem_kind", None))
    stem_keys: set[str] = set()
    if ckpt_stem is not None and det_stem is not None and ckpt_stem != det_stem:
        # the tensors whose presence or shape depends on the stem: compare the body with a twin
        # built with the checkpoint's stem and otherwise the same arguments
        twin = _shapes(build_body(backbone, {**kwargs, "stem": ckpt_stem}))
        stem_keys = {k for k in own.keys() | twin.keys()
                     if own.get(k) != twin.get(k) or k.startswith("stem")}
        skipped = sorted(k for k in stem_keys if k in state)
        say(f"init from {ckpt.path}: checkpoint stem {ckpt_stem!r} != detection stem "
            f"{det_stem!r}: skipping {len(skipped)} stem-dependent tensors "
            f"({_summarize(skipped)}); they keep their fresh initialisation")

    for key, value in state.items():
        if key in stem_keys:
            continue
        if key not in own:
            raise CheckpointError(f"{ckpt.path}: checkpoint tensor {key!r} (shape "
                                  f"{tuple(value.shape)}) does not exist in backbone "
                                  f"{backbone!r} (checkpoint for a different architecture?)")
        if tuple(value.shape) != own[key]:
            raise CheckpointError(f"{ckpt.path}: tensor {key!r} has shape {tuple(value.shape)} "
                                  f"in the checkpoint but {own[key]} in backbone {backbone!r} "
                                  f"(checkpoint for a different architecture?)")
    missing = [k for k in own if k not in state and k not in stem_keys]
    if missing:
        raise CheckpointError(f"{ckpt.path}: checkpoint lacks tensor {missing[0]!r} (shape "
                              f"{own[missing[0]]} in backbone {backbone!r}; {len(missing)} "
                              f"missing; checkpoint for a different architecture?)")
    to_load = {k: v for k, v in state.items() if k not in stem_keys}
    result = body.load_state_dict(to_load, strict=False)
    unexpected = [k for k in result.unexpected_keys if not _is_classifier(k)]
    assert not unexpected, unexpected  # checked above
    counts = {"loaded": len(to_load), "skipped_classifier": n_cls,
              "skipped_stem": len(stem_keys & state.keys())}
    say(f"init from {ckpt.path}: loaded {counts['loaded']} tensors, skipped "
        f"{counts['skipped_classifier']} classifier and {counts['skipped_stem']} stem tensors")
    return counts


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
    strides = [max(1, round(size / f.shape[-1])) for f in feats]
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
