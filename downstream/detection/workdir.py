"""What a detection run keeps in its work dir, and the mmengine hooks that keep it: portable
checkpoints that resume under ``weights_only=True``, the training time across resumes, the
NaN stop, and the fingerprint that lets only the same run resume (``prepare_work_dir``)."""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from backbones.atomic import atomic_write_json
from backbones.resume import changed_parts, check_finite

TIME_FILE = "train_time.json"


# --------------------------------------------------------------------------- resume under torch>=2.6
# torch >= 2.6 loads with weights_only=True by default, and mmengine 0.10.7 resumes with a plain
# torch.load (mmengine issue 1655). What its checkpoints pickle besides tensors:
# - the message hub's ``HistoryBuffer`` objects, whose __getstate__ also pickles the class-level
#   dict of statistics functions -- as ``getattr(HistoryBuffer, 'min')``, i.e. the global
#   ``builtins.getattr``, which must not be allow-listed (with it a file can fetch arbitrary
#   attributes of allow-listed objects and plant them as callables);
# - numpy arrays (the buffers' histories) and numpy scalars (runtime info: 'eta').
# So checkpoints written by ``run_detection`` store each HistoryBuffer as
# ``HistoryBuffer(log_history: list, count_history: list, max_length: int)`` (no getattr, no
# numpy; ``__setstate__`` re-installs the default statistics anyway), and resuming allow-lists,
# for the duration of the run only, HistoryBuffer plus numpy's scalar reconstruction.


class _PortableHistoryBuffer:
    """Pickles as a call of the allow-listed HistoryBuffer class on plain lists."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf

    def __reduce__(self) -> tuple:
        from mmengine.logging import HistoryBuffer

        return (HistoryBuffer, ([float(v) for v in self.buf._log_history],
                                [int(v) for v in self.buf._count_history],
                                int(self.buf.max_length)))


def make_checkpoint_portable(checkpoint: dict) -> None:
    """Rewrite the message hub's HistoryBuffers of an mmengine checkpoint (in place, before it
    is saved) so that it loads with ``weights_only=True`` and no ``getattr`` global."""
    from mmengine.logging import HistoryBuffer

    hub = checkpoint.get("message_hub")
    if isinstance(hub, dict) and isinstance(hub.get("log_scalars"), dict):
        for key, value in list(hub["log_scalars"].items()):
            if isinstance(value, HistoryBuffer):
                hub["log_scalars"][key] = _PortableHistoryBuffer(value)


def mmengine_checkpoint_globals() -> list[Any]:
    """Exactly what the checkpoints written by run_detection need beyond torch's defaults
    (``collections.Counter`` of the MultiStepLR milestones and ``_codecs.encode`` are torch
    defaults): HistoryBuffer, and numpy scalars with their dtype (``runtime_info['eta']``)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    # BUILD of a dtype needs its concrete class (numpy.dtypes.Float64DType for 'eta')
    dtype_classes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32")]
    return [HistoryBuffer, np.dtype, scalar, *dtype_classes]


@contextlib.contextmanager
def mmengine_safe_globals() -> Iterator[None]:
    """Scope the allow-list to the run: ``weights_only=True`` stays the default everywhere."""
    allowed = mmengine_checkpoint_globals()
    scoped = getattr(torch.serialization, "safe_globals", None)
    if scoped is not None:
        with scoped(allowed):
            yield
    else:  # torch < 2.5 has no scoped variant (and defaults to weights_only=False anyway)
        yield


# --------------------------------------------------------------------------- config filling


def make_run_hook(work_dir: Path) -> Any:
    from mmengine.dist import is_main_process
    from mmengine.hooks import Hook

    class HarnessRunHook(Hook):
        """Cumulative training seconds per finished epoch (kept across resumes) and the
        validation metrics of each epoch."""

        priority = "VERY_LOW"

        def __init__(self) -> None:
            self.path = work_dir / TIME_FILE
            self.record: dict[str, float] = {}
            self.base = 0.0
            self.t0 = time.perf_counter()
            self.val: dict[int, dict] = {}
            self.max_epochs: int | None = None

        def before_train(self, runner) -> None:
            if self.path.is_file():
                with contextlib.suppress(OSError, ValueError):
                    self.record = {str(k): float(v) for k, v in
                                   json.loads(self.path.read_text()).items()}
            self.base = self.record.get(str(runner.epoch), 0.0)
            self.t0 = time.perf_counter()

        def after_train_epoch(self, runner) -> None:
            self.record[str(runner.epoch + 1)] = self.base + time.perf_counter() - self.t0
            if is_main_process():
                atomic_write_json(self.path, self.record)

        def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
            make_checkpoint_portable(checkpoint)

        def after_val_epoch(self, runner, metrics=None) -> None:
            if metrics is not None:
                self.val[runner.epoch] = dict(metrics)

        def train_seconds(self, epoch: int) -> float:
            return float(self.record.get(str(epoch), self.base + time.perf_counter() - self.t0))

    return HarnessRunHook()


def make_finite_hook() -> Any:
    from mmengine.hooks import Hook

    class NonFiniteLossHook(Hook):
        """Stops training on the first iteration whose losses hold a NaN/inf, on every rank
        (the flag is all-reduced) and before any hook of that iteration saves a checkpoint:
        the last good checkpoint stays, and no metrics are written."""

        priority = "VERY_HIGH"

        def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
            scalars = {k: float(v.detach().float().mean()) if isinstance(v, torch.Tensor)
                       else float(v) for k, v in (outputs or {}).items()
                       if isinstance(v, (torch.Tensor, int, float))}
            check_finite(scalars, {}, f"detection: epoch {runner.epoch} iteration {runner.iter}")

    return NonFiniteLossHook()


# --------------------------------------------------------------------------- resume only the same run
FINGERPRINT_FILE = "fingerprint.json"
_RESUME_FILES = ("last_checkpoint", TIME_FILE)


def prepare_work_dir(work_dir: Path, fingerprint: Mapping[str, str],
                     log: Any = print) -> list[str]:
    """Make ``work_dir`` resumable only by the run of ``fingerprint``: when the stored
    fingerprint differs (or is missing beside checkpoints), remove the checkpoints and the
    resume files, so mmengine's ``resume=True`` starts over; then store the new fingerprint.
    Returns the parts that changed (empty: resume)."""
    path = work_dir / FINGERPRINT_FILE
    old: Any = None
    if path.is_file():
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(path.read_text())
    ckpts = sorted(work_dir.glob("*.pth"))
    changed = changed_parts(old, fingerprint) if (old is not None or ckpts) else []
    if changed:
        for f in [*ckpts, *(work_dir / n for n in _RESUME_FILES)]:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        shutil.rmtree(work_dir / "dvclive", ignore_errors=True)   # the old run's curves
        log(f"[detect] {work_dir} held a run with other inputs (changed: {', '.join(changed)}); "
            f"its {len(ckpts)} checkpoint(s) removed, starting over")
    atomic_write_json(path, dict(fingerprint))
    return changed
