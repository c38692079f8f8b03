"""A retrained network's checkpoint (``model.pt``): its weights and the ``arch`` record that
rebuilds it, written and read here only (retraining, deployment, transfer: detection and
re-ID initialise their backbones with ``init_from_classifier``).

    {"model": state_dict, "arch": {"backbone": <registered name>, "kwargs": {...}}}

Nothing read from a file chooses code to run: the record may name only a *registered* backbone
(``backbones.registry``), never ``package.module:function`` (that form is accepted from the
command line and params.yaml only, where the user wrote it), and its kwargs are plain data
(weights-only load: tensors, numbers, strings, lists, dicts), handed to that factory as keyword
arguments it declares. A record that breaks this is refused with one line and nothing is
imported or called.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from backbones.atomic import CheckpointError, atomic_torch_save, safe_torch_load


def check_arch(arch: Any, source: str) -> dict[str, Any]:
    """The ``arch`` record as ``{"backbone": str, "kwargs": dict}`` if it names a registered
    backbone with keyword arguments its factory takes; CheckpointError otherwise."""
    from backbones.registry import list_backbones, registered_factory
    if not isinstance(arch, Mapping) or not isinstance(arch.get("backbone"), str) \
            or not isinstance(arch.get("kwargs", {}), Mapping):
        raise CheckpointError(f"{source}: 'arch' must be {{'backbone': str, 'kwargs': dict}}, "
                              f"got {arch!r:.200}")
    name = arch["backbone"]
    factory = registered_factory(name)
    if factory is None:
        raise CheckpointError(f"{source}: arch.backbone {name!r} is not a registered backbone "
                              f"({', '.join(list_backbones())}); a checkpoint may name only "
                              f"those (code named in a file is never imported or run)")
    kwargs = dict(arch.get("kwargs") or {})
    bad = [k for k in kwargs if not isinstance(k, str)]
    if bad:
        raise CheckpointError(f"{source}: arch.kwargs has a non-string key {bad[0]!r}")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise CheckpointError(f"{source}: arch.kwargs {unknown} are not arguments of "
                                  f"backbone {name!r} (it takes {', '.join(params)})")
    return {"backbone": name, "kwargs": kwargs}


def nas_arch(genotype: Any, *, C: int, layers: int, stem: str, num_classes: int,
             binarizer: str, binary: bool = True) -> dict[str, Any]:
    """The arch record of a network of ``genotype``'s cells (backbone ``nas``)."""
    return {"backbone": "nas", "kwargs": {"genotype": genotype.to_dict(), "C": C,
                                          "layers": layers, "stem": stem,
                                          "num_classes": num_classes, "binary": binary,
                                          "binarizer": binarizer}}


def build_network(arch: Any, source: str = "arch record") -> nn.Module:
    """The network an ``arch`` record describes (checked by ``check_arch`` first)."""
    from backbones.genotypes import Genotype
    from backbones.registry import create_backbone
    record = check_arch(arch, source)
    kwargs = record["kwargs"]
    if isinstance(kwargs.get("genotype"), Mapping):
        kwargs["genotype"] = Genotype.from_dict(dict(kwargs["genotype"]),
                                                f"{source}: arch.kwargs.genotype")
    try:
        return create_backbone(record["backbone"], **kwargs)
    except TypeError as exc:   # an argument the factory (or what it passes them to) refuses
        raise CheckpointError(f"{source}: arch.kwargs do not fit backbone "
                              f"{record['backbone']!r} ({exc})") from None


def read_checkpoint(path: str | os.PathLike[str], *, mmap: bool = False
                    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state_dict, checked arch record) of a ``model.pt``; CheckpointError naming the file."""
    path = Path(path)
    payload = safe_torch_load(path, mmap=mmap)
    if not isinstance(payload, Mapping) or not isinstance(payload.get("model"), Mapping):
        got = sorted(map(str, payload))[:8] if isinstance(payload, Mapping) else \
            type(payload).__name__
        raise CheckpointError(f"{path}: expected a dict with 'model' (a state_dict) and 'arch' "
                              f"(the train stage's format); got {got}")
    state = dict(payload["model"])
    bad = next((k for k, v in state.items() if not isinstance(v, Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: 'model' entry {bad!r} is not a tensor")
    if "arch" not in payload:
        raise CheckpointError(f"{path}: no 'arch' record (written by `harness train`); "
                              f"retrain it")
    return state, check_arch(payload["arch"], str(path))


def read_arch(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the checked arch record of a ``model.pt`` (its tensors are mapped, not read)."""
    return read_checkpoint(path, mmap=True)[1]


def load_network(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """(network with its weights, arch record) from a ``model.pt``."""
    from backbones.atomic import load_state_dict_strict
    state, arch = read_checkpoint(path)
    net = build_network(arch, str(path))
    load_state_dict_strict(net, state, str(path))
    return net, arch


def save_checkpoint(path: str | os.PathLike[str], net: nn.Module, arch: Mapping[str, Any]
                    ) -> None:
    """Write ``model.pt`` atomically (the arch record is checked before anything is written)."""
    atomic_torch_save({"model": net.state_dict(), "arch": check_arch(arch, str(path))}, path)


# -- initialising a downstream backbone (detection, re-ID) from a retrained classifier ----------
#: attributes holding a classification head: never part of a downstream backbone (the task has
#: other classes)
HEAD_ATTRS = ("classifier", "fc")
HEAD_PREFIXES = tuple(f"{a}." for a in HEAD_ATTRS)


@dataclass
class InitReport:
    """What ``init_from_classifier`` did, tensor by tensor."""
    source: str
    loaded: list[str] = field(default_factory=list)
    skipped_classifier: list[str] = field(default_factory=list)
    skipped_stem: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.source}: loaded {len(self.loaded)} tensors, skipped "
                f"{len(self.skipped_classifier)} classifier and {len(self.skipped_stem)} stem "
                f"tensors")

    def counts(self) -> dict[str, int]:
        return {"loaded": len(self.loaded), "skipped_classifier": len(self.skipped_classifier),
                "skipped_stem": len(self.skipped_stem)}


def downstream_kwargs(backbone: str, path: str | os.PathLike[str],
                      user_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The kwargs a downstream backbone is built with from a ``model.pt``: its arch record's
    (without ``num_classes``: the classifier is not reused), overridden by ``user_kwargs``
    (typically ``stem``). The checkpoint must be of the same backbone; a user genotype that
    differs from the checkpoint's is refused (parameter-free ops would load silently)."""
    from backbones.genotypes import Genotype, GenotypeError
    from backbones.registry import resolve_genotype
    arch = read_arch(path)
    if arch["backbone"] != backbone:
        raise CheckpointError(f"{path}: checkpoint was trained for backbone "
                              f"{arch['backbone']!r}, but the downstream model uses {backbone!r}")
    kwargs = dict(arch["kwargs"])
    kwargs.pop("num_classes", None)
    user = dict(user_kwargs or {})
    if isinstance(kwargs.get("genotype"), Mapping):
        try:
            kwargs["genotype"] = Genotype.from_dict(dict(kwargs["genotype"]),
                                                    f"{path}: arch.kwargs.genotype")
        except GenotypeError as exc:
            raise CheckpointError(str(exc)) from None
    if "genotype" in user and "genotype" in kwargs \
            and resolve_genotype(user["genotype"]) != kwargs["genotype"]:
        raise CheckpointError(f"{path}: the checkpoint's genotype differs from the requested "
                              f"genotype {str(user['genotype'])!r}")
    return {**kwargs, **user}


def stem_dependent_prefixes(net: nn.Module) -> tuple[str, ...]:
    """The state-dict prefixes whose shapes depend on the stem: the network's own rule
    (``net.stem_dependent_prefixes()``), or the stem's tensors for a backbone without one."""
    own = getattr(net, "stem_dependent_prefixes", None)
    return tuple(own()) if callable(own) else ("stem.", "stem0.", "stem1.")


def head_prefixes(net: nn.Module) -> tuple[str, ...]:
    """The state-dict prefixes of the classification head: the network's own rule
    (``net.head_prefixes()``, e.g. a timm model's ``model.fc.``), or ``HEAD_PREFIXES``."""
    own = getattr(net, "head_prefixes", None)
    return tuple(own()) if callable(own) else HEAD_PREFIXES


def init_from_classifier(net: nn.Module, path: str | os.PathLike[str], *,
                         log: Callable[[str], None] = print) -> InitReport:
    """Copy a retrained classifier's tensors (``model.pt``) into a downstream backbone ``net``.

    Every tensor is copied, except the classification head (``head_prefixes``, always) and,
    when ``net`` uses another stem than the checkpoint (a CIFAR-trained cell reused with the
    ImageNet stem), the stem-dependent tensors (``stem_dependent_prefixes``), skipped with one
    logged line. Any other mismatch (a tensor missing on either side, another shape) raises
    ``CheckpointError`` naming the first such tensor and both shapes."""
    state, arch = read_checkpoint(path)
    if state and all(k.startswith("module.") for k in state):    # saved from (D)DP
        state = {k[len("module."):]: v for k, v in state.items()}
    report = InitReport(str(path))
    ckpt_stem = arch["kwargs"].get("stem")
    net_stem = getattr(net, "stem_kind", None)
    skip_stem = bool(ckpt_stem and net_stem and ckpt_stem != net_stem)
    stem = stem_dependent_prefixes(net) if skip_stem else ()
    own = net.state_dict()
    head = head_prefixes(net)
    to_load: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith(head):
            report.skipped_classifier.append(key)
        elif key.startswith(stem):
            report.skipped_stem.append(key)
        elif key not in own:
            raise CheckpointError(f"{path}: checkpoint tensor {key!r} {tuple(value.shape)} does "
                                  f"not exist in the backbone (checkpoint for a different "
                                  f"architecture?)")
        elif tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{path}: tensor {key!r} has shape {tuple(value.shape)} in "
                                  f"the checkpoint but {tuple(own[key].shape)} in the backbone "
                                  f"(checkpoint for a different architecture?)")
        else:
            to_load[key] = value
    missing = [k for k in own if k not in to_load and not k.startswith((*head, *stem))]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks tensor {missing[0]!r} "
                              f"{tuple(own[missing[0]].shape)} of the backbone ({len(missing)} "
                              f"missing; checkpoint for a different architecture?)")
    net.load_state_dict(to_load, strict=False)     # what is left out was checked above
    report.loaded = sorted(to_load)
    if skip_stem:
        log(f"[init] {path}: checkpoint stem {ckpt_stem!r} != backbone stem {net_stem!r}: "
            f"{len(report.skipped_stem)} stem-dependent tensors "
            f"({', '.join(p.rstrip('.') for p in stem)}) keep their fresh initialisation")
    return report
