"""``HarnessBackbone``: any harness backbone as an mmdet 3.x backbone.

Name it in a plain mmdet config::

    custom_imports = dict(imports=['downstream.detection.mmdet_backbone'],
                          allow_failed_imports=False)
    model = dict(backbone=dict(type='HarnessBackbone', backbone='nas',
                               backbone_kwargs=dict(genotype='runs/smoke/search/dcpnas/seed0/genotype.json',
                                                    C=36, layers=14, stem='imagenet'),
                               init_checkpoint='runs/smoke/train/dcpnas/seed0/model.pt'),
                 neck=dict(type='FPN', in_channels=[...], ...))

A config cannot know a searched cell's widths in advance: ``harness_backbone_info(cfg)`` builds
the backbone once and returns its out_channels and strides (``run_detection`` fills the neck's
``in_channels`` and the heads' strides with it).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmdet.registry import MODELS
from torch import Tensor, nn

from downstream.detection.body import (BackboneInfo, build_body, init_from_checkpoint,
                                       probe_body, resolve_backbone_kwargs, stage_groups)


@MODELS.register_module()
class HarnessBackbone(BaseModule):
    """A ``backbones.registry`` backbone (a registered name or ``module:function``).

    Args:
        backbone: registry name ("nas", "darts_v2", "bireal_resnet18") or "module:function".
        backbone_kwargs: kwargs of the factory (genotype, C, layers, stem, width, ...). With
            ``init_checkpoint`` trained for the same backbone name, the checkpoint's
            ``arch.kwargs`` are the defaults and these override them.
        out_indices: which feature maps the backbone computes (its own indexing).
        feature_select: positions in the backbone's feature tuple that ``forward`` returns
            (``run_detection`` sets it for SSD: the maps at strides 8 and 16).
        init_checkpoint: a retrained classification checkpoint (``harness train``) to
            initialise from; see ``downstream.detection.body``.
        frozen_stages: freeze the stem (0) and the first k stages (k); -1 freezes nothing.
        norm_eval: keep the BatchNorm layers in eval mode while training.
    """

    def __init__(self, backbone: str = "nas", backbone_kwargs: Mapping[str, Any] | None = None,
                 out_indices: Sequence[int] | None = None,
                 init_checkpoint: str | os.PathLike[str] | None = None,
                 frozen_stages: int = -1, norm_eval: bool = False,
                 feature_select: Sequence[int] | None = None,
                 init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.backbone_name = backbone
        kwargs = resolve_backbone_kwargs(backbone, backbone_kwargs, init_checkpoint)
        self.body = build_body(backbone, kwargs, out_indices)
        self.feature_select = None if feature_select is None else [int(i) for i in feature_select]
        self.out_channels = list(self.body.out_channels)
        if self.feature_select is not None:
            self.out_channels = [self.out_channels[i] for i in self.feature_select]
        self.num_features = int(self.body.num_features)
        if init_checkpoint is not None:
            # loaded here, not in init_weights: a bad checkpoint fails when the model is built,
            # and mmengine's Runner.init_weights leaves the plain-torch body untouched
            init_from_checkpoint(self.body, init_checkpoint,
                                 logger=lambda msg: print_log(msg, logger="current"))
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._frozen = (stage_groups(self.body)[:frozen_stages + 1]
                        if frozen_stages >= 0 else [])
        self._freeze_stages()

    def init_weights(self) -> None:
        """The body was initialised by its constructor and, with ``init_checkpoint``, from the
        checkpoint: never re-initialise it (a body's own ``init_weights``, as timm models have,
        would undo the checkpoint). An explicit ``init_cfg`` is still honoured."""
        if self.init_cfg is not None:
            super().init_weights()
        else:
            self.is_init = True

    def _freeze_stages(self) -> None:
        for group in self._frozen:
            for module in group:
                module.eval()
                for p in module.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True) -> "HarnessBackbone":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        feats = tuple(self.body.forward_features(x))
        if self.feature_select is not None:
            feats = tuple(feats[i] for i in self.feature_select)
        return feats


def harness_backbone_info(backbone_cfg: Mapping[str, Any], *, load_checkpoint: bool = False,
                          size: int = 128) -> BackboneInfo:
    """out_channels and strides of a ``type='HarnessBackbone'`` config dict: the backbone is
    built once (and, with ``load_checkpoint``, initialised from its checkpoint, so that a bad
    name or checkpoint fails here with one clear error rather than inside mmengine's
    registry) and probed with a dummy forward."""
    cfg = dict(backbone_cfg)
    name = cfg.get("backbone", "nas")
    kwargs = resolve_backbone_kwargs(name, cfg.get("backbone_kwargs"),
                                     cfg.get("init_checkpoint"))
    body = build_body(name, kwargs, cfg.get("out_indices"))
    if load_checkpoint and cfg.get("init_checkpoint") is not None:
        init_from_checkpoint(body, cfg["init_checkpoint"],
                             logger=lambda msg: print_log(msg, logger="current"))
    return probe_body(body, name, size=size)


def harness_out_channels(backbone_cfg: Mapping[str, Any]) -> list[int]:
    """The neck's ``in_channels`` for a ``type='HarnessBackbone'`` config dict."""
    return harness_backbone_info(backbone_cfg).out_channels
