"""Atomic writes and safe loads: a kill mid-write leaves the previous file intact, and no
checkpoint is ever unpickled with arbitrary globals (``weights_only=True``)."""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: what a user can do about each kind of I/O failure
_HINTS = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some of your disk quota",
    errno.EROFS: "point the output (paths.* in params.yaml) at a writable file system",
    errno.EACCES: "fix the permissions or point paths.* in params.yaml elsewhere",
    errno.EPERM: "fix the permissions or point paths.* in params.yaml elsewhere",
    errno.ENAMETOOLONG: "use a shorter path (paths.* in params.yaml)",
    errno.EIO: "check the disk",
}


class StorageError(OSError):
    """A file the harness had to write or read could not be, for a reason outside the
    program (disk full, read-only file system, permissions, quota, path too long, a file that
    vanished). ``str()`` is one line: the file, the reason, the size, what was kept, what to
    do. Raised by every write in this module and by :func:`storage_errors`."""

    def __init__(self, code: int | None, message: str, filename: str | None = None) -> None:
        super().__init__(code, message)
        self.message = message
        self.filename = filename

    def __str__(self) -> str:
        return self.message


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or -1)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def write_failure(exc: OSError, path: str | os.PathLike[str], size: int | None,
                  existed: bool | None = None) -> StorageError:
    """The one-line error for a write of ``size`` bytes to ``path`` that failed with ``exc``."""
    path = Path(path)
    existed = path.exists() if existed is None else existed
    kept = ("the previous file is unchanged" if existed else "no partial file was left")
    hint = _HINTS.get(exc.errno or -1, "fix the cause")
    return StorageError(exc.errno, f"cannot write {path} ({_size(size)}): {_reason(exc)}; "
                        f"{kept}. {hint[0].upper()}{hint[1:]} and run the same command again: "
                        f"it resumes from the last checkpoint", str(path))


def read_failure(exc: OSError, path: str | os.PathLike[str] | None) -> StorageError:
    """The one-line error for a file that could not be read (vanished, unreadable)."""
    where = path if path is not None else (exc.filename or "a file")
    return StorageError(exc.errno, f"cannot read {where}: {_reason(exc)}. Restore the file (or "
                        f"re-run `harness prepare` for generated data) and run the same command "
                        f"again: it resumes from the last checkpoint", str(where))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and
    ``os.replace``: a kill or a failure at any point leaves the previous file whole, and no
    temporary file stays behind (except after SIGKILL). Every file the harness writes goes
    through here; an ``OSError`` becomes one :class:`StorageError` line. The file's mode follows
    the umask, as a plain ``open()``'s would."""
    path = Path(path)
    existed = path.exists()
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~UMASK)   # mkstemp makes 0600; a plain open() obeys the umask
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_failure(exc, path, len(data), existed) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(Path(path), text.encode())


def jsonable(obj: Any) -> Any:
    """Plain JSON data of ``obj``: mappings (string keys) and sequences recursively, objects
    with ``to_dict()`` (a Genotype) by it, numbers, strings, booleans and None as they are,
    anything else as its ``str``."""
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_rendered(path: str | os.PathLike[str], render: Callable[[IO[bytes]], Any]
                          ) -> None:
    """Let a library write into memory (``render(buffer)``: ``fig.savefig``, ``img.save``),
    then write the bytes atomically: a library writing straight to ``path`` could leave half
    a file."""
    buf = io.BytesIO()
    render(buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    import torch
    atomic_write_rendered(path, lambda buf: torch.save(obj, buf))


@contextlib.contextmanager
def storage_errors(target: str | os.PathLike[str]) -> Iterator[None]:
    """Around work whose files a library writes itself (mmengine's work dir, torchreid): an
    ``OSError`` raised inside becomes one :class:`StorageError` line naming the file the
    library was writing (or ``target``). Files that library writes non-atomically are its
    own; the harness's own records (metrics, resume state) are written atomically."""
    try:
        yield
    except OSError as exc:
        raise storage_error_from(exc, target) from None


#: errors that only a write can raise
_WRITE_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def storage_error_from(exc: OSError, fallback: str | os.PathLike[str] | None = None
                       ) -> StorageError:
    """A library's ``OSError`` as one line: a write failure when only a write can fail that
    way (no space, quota, read-only), otherwise a failure to read/access the named file."""
    if isinstance(exc, StorageError):
        return exc
    path = exc.filename or fallback
    if exc.errno in _WRITE_ONLY:
        return write_failure(exc, path or "a file", None)
    if path is None:
        return StorageError(exc.errno, f"I/O failure: {_reason(exc)}")
    return StorageError(exc.errno, f"cannot access {path}: {_reason(exc)}. Fix the cause (or "
                        f"re-run `harness prepare` for generated data) and run the same command "
                        f"again: it resumes from the last checkpoint", str(path))


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


def safe_torch_load(path: str | os.PathLike[str], *, mmap: bool = False) -> Any:
    """torch.load with weights_only=True: tensors, containers and primitives only.

    ``mmap=True`` maps the tensors instead of reading them: for reading a small record (the
    ``arch`` of a model.pt) out of a large checkpoint without loading its weights."""
    import torch
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
