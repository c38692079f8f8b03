"""Resume a long run only with the same inputs: the one mechanism of search, retraining,
re-ID and detection.

A run's *fingerprint* is a dict of named digests of what its result depends on (settings,
code, versions, data, world size, a starting checkpoint's sha256, ...; the harness builds the
parts other than the settings, ``harness.provenance.run_inputs``). Its resume state is saved
with that fingerprint (``save_state``) and read back only by a run with the same one
(``read_state``): a rerun whose parts differ starts over and says which changed. Every RNG a
run draws from is part of the state (``rng_state``), so a resumed run continues exactly as an
uninterrupted one, and a non-finite loss stops every rank before anything of that step is
written (``check_finite``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backbones.atomic import CheckpointError, atomic_torch_save, safe_torch_load
from backbones.distributed import all_reduce_values


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf scalar or architecture parameter; the last good checkpoint
    is kept (every rank stops with the same message)."""


def digest_of(*parts: Any) -> str:
    """A short digest of settings models, dataclasses, dicts and plain values."""
    from pydantic import BaseModel

    def plain(obj: Any) -> Any:
        if isinstance(obj, BaseModel):
            return obj.model_dump()
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        return obj
    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_settings(inputs: Mapping[str, str] | None, *settings: Any) -> dict[str, str]:
    """The fingerprint of a run: the caller's ``inputs`` plus the digest of the settings the
    runner resolved (a runner alone, without inputs, is keyed by its settings only)."""
    return {**dict(inputs or {}), "settings": digest_of(*settings)}


def changed_parts(old: Any, new: Mapping[str, str]) -> list[str]:
    """Which parts of a stored fingerprint differ from ``new`` (a stored string or anything
    else that is not a dict: written by an older harness)."""
    if not isinstance(old, Mapping):
        return ["format (written by an older version of the harness)"]
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def save_state(path: Path, fingerprint: Mapping[str, str], state: Mapping[str, Any]) -> None:
    """Write a resume state atomically, keyed by ``fingerprint`` (tensors and plain values
    only, so it loads with ``weights_only=True``)."""
    atomic_torch_save({**state, "fingerprint": dict(fingerprint)}, path)


def read_state(path: Path, fingerprint: Mapping[str, str], *, required: Sequence[str],
               what: str, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The state ``save_state`` wrote at ``path`` with this ``fingerprint``; None when there is
    none, or when it was written with other inputs (``log`` says which parts changed and that
    ``what`` starts over). A file that is not such a state is a ``CheckpointError`` naming it:
    deleting it is the user's call."""
    if not path.is_file():
        return None
    state = safe_torch_load(path)
    keys = ("fingerprint", *required)
    if not isinstance(state, dict) or any(k not in state for k in keys):
        got = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a resume checkpoint of the harness (expected a dict "
                              f"with {', '.join(keys)}; got {got}); delete it to start the "
                              f"run over")
    changed = changed_parts(state["fingerprint"], fingerprint)
    if changed:
        log(f"{path} was written with other inputs (changed: {', '.join(changed)}); "
            f"starting {what} from scratch")
        return None
    return state


def check_finite(scalars: Mapping[str, float], tensors: Mapping[str, torch.Tensor], where: str,
                 checkpoint: Path | None = None, epoch: int | None = None) -> None:
    """Raise NonFiniteLossError on every rank when any rank sees a non-finite scalar or tensor.

    One all-reduce (max) of a flag per name, so all ranks know the same names and raise the
    same message instead of one raising while the others wait in the next collective."""
    names = sorted(scalars) + sorted(tensors)
    flags = [0.0 if math.isfinite(float(scalars[k])) else 1.0 for k in sorted(scalars)]
    flags += [0.0 if bool(torch.isfinite(t.detach()).all()) else 1.0
              for _, t in sorted(tensors.items())]
    flags = all_reduce_values(flags or [0.0], "max")[:len(names)]
    bad = [n for n, f in zip(names, flags) if f > 0]
    if not bad:
        return
    kept = ""
    if checkpoint is not None:
        kept = (f"; the last good checkpoint {checkpoint} (after epoch {epoch - 1}) is kept"
                if checkpoint.is_file() and epoch else "; no checkpoint had been written yet")
    raise NonFiniteLossError(f"{where}: non-finite value (NaN or inf) in {', '.join(bad)}"
                             f"{kept}. Lower the learning rate or check the data.")


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, as tensors and plain values (loads with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(), "python": _plain(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Any) -> None:
    """Restore ``rng_state()`` (a bare tensor: torch's CPU state of an older checkpoint)."""
    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["torch"])
    random.setstate(_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(x: Any) -> Any:
    return [_plain(v) for v in x] if isinstance(x, (list, tuple)) else x


def _tuple(x: Any) -> Any:
    return tuple(_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
