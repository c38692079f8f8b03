"""A retrained network's checkpoint (``model.pt``): its weights and the ``arch`` record that
rebuilds it, written and read here only.

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
from collections.abc import Mapping
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
