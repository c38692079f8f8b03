"""Atomic writes and safe loads: a kill mid-write leaves the previous file intact, and no
checkpoint is ever unpickled with arbitrary globals (``weights_only=True``)."""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    _atomic_write_bytes(Path(path), text.encode())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(Path(path), buf.getvalue())


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


def safe_torch_load(path: str | os.PathLike[str], *, mmap: bool = False) -> Any:
    """torch.load with weights_only=True: tensors, containers and primitives only.

    ``mmap=True`` maps the tensors instead of reading them: for reading a small record (the
    ``arch`` of a model.pt) out of a large checkpoint without loading its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - one clear error for any unreadable file
        raise CheckpointError(f"{path}: cannot be loaded as a weights-only checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def load_state_dict_strict(module: torch.nn.Module, state: dict[str, torch.Tensor],
                           source: str) -> None:
    """load_state_dict that names the first missing/unexpected/mismatched tensor."""
    own = module.state_dict()
    for key, value in state.items():
        if key not in own:
            raise CheckpointError(f"{source}: checkpoint tensor {key!r} does not exist in the "
                                  f"model (checkpoint for a different architecture?)")
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source}: tensor {key!r} has shape {tuple(value.shape)} in "
                                  f"the checkpoint but {tuple(own[key].shape)} in the model "
                                  f"(checkpoint for a different architecture?)")
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks tensor {missing[0]!r} "
                              f"({len(missing)} missing; checkpoint for a different architecture?)")
    module.load_state_dict(state)
