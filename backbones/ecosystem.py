"""Backbones the field already uses, by name: ``timm:NAME`` and ``torchvision:NAME``.

They honour the harness's backbone contract (``backbones.registry.FeatureBackbone``) without a
wrapper per model:
- ``timm:NAME``: ``timm.create_model(NAME, num_classes=...)``; channels and strides from the
  model's ``feature_info``, feature maps from timm's features API (``forward_intermediates``),
  the pooled embedding from its head API (``forward_head(..., pre_logits=True)``);
- ``torchvision:NAME``: ``torchvision.models.get_model(NAME, num_classes=...)``; feature maps
  from ``torchvision.models.feature_extraction`` (the last node at each stride, found once by
  tracing), the embedding from the input of the classifier's last Linear.
Pretrained weights only from a local file (``pretrained_file``: a state dict as .safetensors,
.pth or .pt; loaded weights-only): nothing is downloaded. The classifier's tensors are skipped
when their shapes differ (another number of classes); any other missing or mismatched tensor
is one ``CheckpointError`` naming the file and the tensor.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from backbones.atomic import CheckpointError, load_state_dict_strict, safe_torch_load
from backbones.names import did_you_mean
from backbones.registry import BackboneContractError, register_backbone, register_prefix

#: feature maps below this stride are not returned by default (the stem's)
MIN_STRIDE = 4


class EcosystemError(BackboneContractError):
    """A timm / torchvision model that cannot be used as asked (unknown name, no features)."""


def _default_indices(strides: Sequence[int]) -> tuple[int, ...]:
    return tuple(i for i, s in enumerate(strides) if s >= MIN_STRIDE) or (len(strides) - 1,)


def _select(indices: Sequence[int] | None, strides: Sequence[int], name: str) -> tuple[int, ...]:
    if indices is None:
        return _default_indices(strides)
    n = len(strides)
    bad = [i for i in indices if not -n <= i < n]
    if bad:
        raise EcosystemError(f"backbone {name!r}: out_indices {bad} out of range for its {n} "
                             f"feature levels (strides {list(strides)})")
    return tuple(sorted({i % n for i in indices}))


def load_pretrained(model: nn.Module, path: str | os.PathLike[str], name: str,
                    head: Sequence[str]) -> None:
    """Copy a local state dict into ``model``; the head's tensors (``head`` prefixes) are
    skipped when their shapes differ from the model's (another number of classes)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"backbone {name!r}: pretrained_file {path} does not exist "
                              f"(weights are never downloaded: give a local .safetensors, "
                              f".pth or .pt state dict)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a safetensors file ({exc})") from None
    else:
        state = safe_torch_load(path)
        for key in ("state_dict", "model"):   # a training checkpoint around the weights
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict of tensors, got "
                              f"{type(state).__name__}")
    own = model.state_dict()
    state = {k: v for k, v in state.items()
             if not (k.startswith(tuple(head)) and k in own and own[k].shape != v.shape)}
    for k in own:
        if k.startswith(tuple(head)) and k not in state:
            state[k] = own[k]          # a fresh head: the model's own initialisation
    load_state_dict_strict(model, state, f"{path} (pretrained_file of {name!r})")


class TimmBackbone(nn.Module):
    """A timm model as a harness backbone (see the module docstring)."""

    def __init__(self, model_name: str, num_classes: int = 1000, *,
                 out_indices: Sequence[int] | None = None,
                 pretrained_file: str | os.PathLike[str] | None = None,
                 stem: str | None = None, binarizer: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__()
        import timm
        name = f"timm:{model_name}"
        if not timm.is_model(model_name):
            raise EcosystemError(f"unknown timm model {model_name!r} (timm {timm.__version__})"
                                 f"{did_you_mean(model_name, timm.list_models())}")
        del stem, binarizer   # the harness's stem and weight-binarizer switches: a library
        # model has its own stem and is real-valued
        self.model = timm.create_model(model_name, pretrained=False, num_classes=num_classes,
                                       **kwargs)
        info = getattr(self.model, "feature_info", None)
        if not info or not hasattr(self.model, "forward_intermediates"):
            raise EcosystemError(f"backbone {name!r}: the timm model has no feature API "
                                 f"(feature_info / forward_intermediates), so it cannot give "
                                 f"feature maps")
        self.strides = [int(f["reduction"]) for f in info]
        self.out_indices = _select(out_indices, self.strides, name)
        self.out_channels = [int(info[i]["num_chs"]) for i in self.out_indices]
        self.num_features = int(self.model.num_features)
        head = self.model.pretrained_cfg.get("classifier") or "head"
        self._heads = [head] if isinstance(head, str) else list(head)
        if pretrained_file is not None:
            load_pretrained(self.model, pretrained_file, name, [f"{h}." for h in self._heads])

    def head_prefixes(self) -> tuple[str, ...]:
        """The classifier's state-dict prefixes (not reused downstream)."""
        return tuple(f"model.{h}." for h in self._heads)

    def forward_features(self, x: Tensor) -> tuple[Tensor, ...]:
        maps = self.model.forward_intermediates(x, indices=list(self.out_indices),
                                                intermediates_only=True)
        return tuple(maps)

    def forward_embedding(self, x: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def stem_dependent_prefixes(self) -> tuple[str, ...]:
        return ()


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise EcosystemError(f"{type(model).__name__} has no Linear classifier")
    return linears[-1]


class TorchvisionBackbone(nn.Module):
    """A torchvision classification model as a harness backbone (see the module docstring)."""

    def __init__(self, model_name: str, num_classes: int = 1000, *,
                 out_indices: Sequence[int] | None = None,
                 pretrained_file: str | os.PathLike[str] | None = None,
                 stem: str | None = None, binarizer: str | None = None,
                 probe_size: int = 256, **kwargs: Any) -> None:
        super().__init__()
        import torchvision
        from torchvision.models.feature_extraction import (create_feature_extractor,
                                                           get_graph_node_names)
        name = f"torchvision:{model_name}"
        known = torchvision.models.list_models(module=torchvision.models)
        if model_name not in known:
            raise EcosystemError(f"unknown torchvision classification model {model_name!r}"
                                 f"{did_you_mean(model_name, known)}")
        del stem, binarizer   # as TimmBackbone
        self.model = torchvision.models.get_model(model_name, weights=None,
                                                  num_classes=num_classes, **kwargs)
        head_name, head = _last_linear(self.model)
        object.__setattr__(self, "_head", head)   # a module of self.model: not registered twice
        self._head_prefix = f"model.{head_name}."
        if pretrained_file is not None:
            load_pretrained(self.model, pretrained_file, name, [f"{head_name}."])
        # the last traced node at each stride (4-D outputs only), found with one probe
        nodes = get_graph_node_names(self.model)[1]
        probe = create_feature_extractor(self.model, return_nodes=nodes).eval()
        with torch.no_grad():
            outs = probe(torch.zeros(1, 3, probe_size, probe_size))
        last_at: dict[int, tuple[str, int]] = {}
        for node, out in outs.items():
            # feature maps; a 1x1 map after global pooling is not one
            if isinstance(out, Tensor) and out.dim() == 4 and out.shape[-1] > 1:
                last_at[max(1, round(probe_size / out.shape[-1]))] = (node, int(out.shape[1]))
        levels = sorted(last_at)
        if not levels:
            raise EcosystemError(f"backbone {name!r}: no node returns a feature map")
        self.strides = levels
        self.out_indices = _select(out_indices, levels, name)
        chosen = [last_at[levels[i]] for i in self.out_indices]
        self.out_channels = [c for _, c in chosen]
        self._nodes = [n for n, _ in chosen]
        # not a registered submodule: it shares the model's modules (one state dict, one set
        # of parameters)
        object.__setattr__(self, "_features",
                           create_feature_extractor(self.model, return_nodes=self._nodes))
        self.num_features = int(self._head.in_features)

    def forward_features(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self._features(x)
        return tuple(out[n] for n in self._nodes)

    def forward_embedding(self, x: Tensor) -> Tensor:
        captured: list[Tensor] = []
        hook = self._head.register_forward_pre_hook(lambda m, inp: captured.append(inp[0]))
        try:
            self.model(x)
        finally:
            hook.remove()
        return captured[-1].flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def stem_dependent_prefixes(self) -> tuple[str, ...]:
        return ()

    def head_prefixes(self) -> tuple[str, ...]:
        """The classifier's state-dict prefix (not reused downstream)."""
        return (self._head_prefix,)


def _family(cls: type[nn.Module], prefix: str):
    def make(model_name: str):
        def factory(**kwargs: Any) -> nn.Module:
            return cls(model_name, **kwargs)
        factory.__name__ = f"{prefix}:{model_name}"
        return factory
    return make


register_prefix("timm", _family(TimmBackbone, "timm"))
register_prefix("torchvision", _family(TorchvisionBackbone, "torchvision"))


@register_backbone("resnet18_real")
def resnet18_real(**kwargs: Any) -> nn.Module:
    """torchvision's real-valued ResNet-18 (``torchvision:resnet18``): the full-precision
    reference of the transfer tables and the trade-off plot, under a plain name."""
    return TorchvisionBackbone("resnet18", **kwargs)
