"""Harness backbones as torchreid models.

``HarnessReIDModel`` follows torchreid's model contract (that of ``torchreid.reid.models.resnet``):
eval mode returns features (B x feature_dim); train mode returns logits (loss ``'softmax'``)
or ``(logits, features)`` (loss ``'triplet'``). Head: the backbone's pooled embedding
(``forward_embedding``, ``num_features``), an optional fc reduction (Linear + BN1d + ReLU
[+ Dropout] per entry of ``fc_dims``, like ``resnet50_fc512``), then the identity classifier.
No BNNeck.

``register_harness_models()`` adds ``harness_<name>`` for every registered harness backbone to
torchreid's model factory, so ``torchreid.reid.models.build_model('harness_nas', num_classes,
loss=...)`` works; ``register_harness_model(name, backbone, backbone_kwargs)`` registers one
entry for any backbone spec, a registry name or ``"package.module:function"``.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from backbones.atomic import jsonable
from backbones.checkpoint import downstream_kwargs, init_from_classifier
from backbones.network import NASNetwork
from backbones.registry import (
    check_feature_backbone,
    create_backbone,
    list_backbones,
)

LOSSES = ("softmax", "triplet")


class HarnessReIDModel(nn.Module):
    """A harness backbone + torchreid's simple head (optional fc reduction, classifier)."""

    def __init__(self, backbone: nn.Module, num_classes: int, loss: str = "softmax", *,
                 fc_dims: Sequence[int] | None = None, dropout_p: float | None = None,
                 name: str = "backbone") -> None:
        super().__init__()
        if loss not in LOSSES:
            raise KeyError(f"Unsupported loss: {loss!r}; expected one of {list(LOSSES)}")
        check_feature_backbone(backbone, name)
        if isinstance(backbone, NASNetwork):
            backbone.classifier = nn.Identity()  # the classification head is never used here
        self.backbone = backbone
        self.loss = loss
        self.fc = self._construct_fc_layer(fc_dims, int(backbone.num_features), dropout_p)
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        self._init_head()

    def _construct_fc_layer(self, fc_dims: Sequence[int] | None, input_dim: int,
                            dropout_p: float | None) -> nn.Module | None:
        if not fc_dims:
            self.feature_dim = input_dim
            return None
        layers: list[nn.Module] = []
        for dim in fc_dims:
            layers += [nn.Linear(input_dim, int(dim)), nn.BatchNorm1d(int(dim)),
                       nn.ReLU(inplace=True)]
            if dropout_p is not None:
                layers.append(nn.Dropout(p=dropout_p))
            input_dim = int(dim)
        self.feature_dim = input_dim
        return nn.Sequential(*layers)

    def _init_head(self) -> None:  # torchreid's _init_params, for the new layers only
        for m in [*(self.fc.modules() if self.fc is not None else []), self.classifier]:
            if isinstance(m, nn.BatchNorm1d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        v = self.backbone.forward_embedding(x)
        v = v.view(v.size(0), -1)
        if self.fc is not None:
            v = self.fc(v)
        if not self.training:
            return v
        y = self.classifier(v)
        if self.loss == "softmax":
            return y
        return y, v


def describe_kwargs(kwargs: Mapping[str, Any]) -> str:
    return json.dumps(jsonable(kwargs), sort_keys=True)


def build_reid_model(backbone: str, num_classes: int, loss: str = "softmax", *,
                     backbone_kwargs: Mapping[str, Any] | None = None,
                     init_checkpoint: str | None = None,
                     fc_dims: Sequence[int] | None = None, dropout_p: float | None = None,
                     log: Callable[[str], None] = print) -> HarnessReIDModel:
    """Build a re-ID model on a harness backbone (registry name or ``module:function``).

    With ``init_checkpoint`` (the train stage's ``model.pt``) the backbone is rebuilt from the
    checkpoint's ``arch`` when it names the same backbone (``backbone_kwargs`` override it, e.g.
    ``{"stem": "imagenet"}``) and initialised from its weights (classifier skipped; stem skipped
    when the stems differ; any other mismatch is a CheckpointError).
    """
    kwargs = dict(backbone_kwargs or {})
    if init_checkpoint is not None:
        kwargs = downstream_kwargs(backbone, init_checkpoint, kwargs)
    net = create_backbone(backbone, **kwargs)
    model = HarnessReIDModel(net, num_classes, loss, fc_dims=fc_dims, dropout_p=dropout_p,
                             name=backbone)
    model.backbone_spec = backbone  # type: ignore[assignment]
    model.backbone_kwargs = kwargs  # type: ignore[assignment]
    model.init_report = None  # type: ignore[assignment]
    if init_checkpoint is not None:
        report = init_from_classifier(model.backbone, init_checkpoint, log=log)
        model.init_report = report  # type: ignore[assignment]
        log(f"[reid] init {report.summary()}")
    return model


def _torchreid_factory() -> dict[str, Callable[..., nn.Module]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        import torchreid.reid.models as trm
    factory = vars(trm).get("__model_factory")
    if not isinstance(factory, dict):
        raise RuntimeError("torchreid.reid.models.__model_factory not found: unsupported "
                           "torchreid version (expected the 0.2.5 PyPI layout)")
    return factory


def register_harness_model(model_name: str, backbone: str,
                           backbone_kwargs: Mapping[str, Any] | None = None,
                           **model_kwargs: Any) -> str:
    """Register ``model_name`` in torchreid's factory, building ``backbone`` with these kwargs.

    The entry has torchreid's signature ``(num_classes, loss='softmax', pretrained=True,
    use_gpu=True)``; ``pretrained`` is ignored (harness backbones are initialised from the
    train stage's checkpoint: pass ``init_checkpoint=`` here). Re-registering replaces.
    """
    frozen_kwargs = dict(backbone_kwargs or {})
    frozen_model_kwargs = dict(model_kwargs)

    def factory_entry(num_classes: int, loss: str = "softmax", pretrained: bool = True,
                      use_gpu: bool = True, **extra: Any) -> nn.Module:
        del pretrained, use_gpu
        return build_reid_model(backbone, num_classes, loss, backbone_kwargs=frozen_kwargs,
                                **{**frozen_model_kwargs, **extra})

    factory_entry.__name__ = model_name
    factory_entry.__doc__ = f"harness backbone {backbone!r} ({describe_kwargs(frozen_kwargs)})"
    _torchreid_factory()[model_name] = factory_entry
    return model_name


def register_harness_models(names: Sequence[str] | None = None, *,
                            backbone_kwargs: Mapping[str, Any] | None = None,
                            prefix: str = "harness_") -> list[str]:
    """Register ``harness_<name>`` for the given (default: all registered) harness backbones.

    ``backbone_kwargs`` are the defaults each entry builds its backbone with (e.g.
    ``{"C": 8, "layers": 5, "stem": "imagenet"}``). Returns the registered model names.
    """
    if names is None:
        names = list_backbones()
    out = []
    for name in names:
        key = prefix + name.replace(":", "_").replace(".", "_")
        out.append(register_harness_model(key, name, backbone_kwargs))
    return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["HarnessReIDModel", "build_reid_model", "register_harness_model",
           "register_harness_models", "count_parameters", "describe_kwargs"]
