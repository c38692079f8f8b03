"""The one epoch loop shared by every search method and by retraining.

It owns what every long run needs and no method should re-implement: rich progress bars,
an atomic checkpoint after every epoch, resume from that checkpoint when the same command is
run again after a kill, a stop on a non-finite loss (keeping the last good checkpoint), and
per-epoch RNG handling so that a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from backbones.atomic import atomic_torch_save, safe_torch_load
from harness import dist_utils


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


class LoopTask(Protocol):
    """What the loop drives: a search method adapter or the retraining task."""

    def begin_epoch(self, epoch: int, total: int) -> None: ...

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def steps_in_epoch(self) -> int: ...

    def step(self, batch: Any) -> dict[str, float]: ...

    def end_epoch(self, epoch: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoopResult:
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int | None = None  # last completed epoch found in the checkpoint
    seconds: float = 0.0                    # wall time over all runs, including killed ones


def _take(it: Iterable[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(it):
        if i >= n:
            return
        yield item


def run_loop(task: LoopTask, *, epochs: int, checkpoint: Path, desc: str,
             fingerprint: str = "", console: Console | None = None,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> LoopResult:
    """Run ``epochs`` epochs of ``task``, resuming from ``checkpoint`` if it exists.

    The checkpoint holds the task state, the history, the elapsed seconds and torch's global
    RNG state at the end of the epoch; it is written atomically (rank 0 only). A checkpoint
    whose ``fingerprint`` (a digest of the run's settings) differs is not resumed: the run
    starts over, because DVC keeps checkpoints across parameter changes."""
    console = console or Console(stderr=True)
    result = LoopResult()
    start_epoch = 0
    elapsed_before = 0.0
    state = safe_torch_load(checkpoint) if checkpoint.is_file() else None
    if state is not None and state.get("fingerprint", "") != fingerprint:
        if dist_utils.is_main():
            console.print(f"[yellow]{checkpoint} was written with other settings; "
                          f"starting {desc} from scratch")
        state = None
    if state is not None:
        task.load_state_dict(state["task"])
        result.history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
        elapsed_before = float(state["seconds"])
        torch.set_rng_state(state["rng"])
        result.resumed_from_epoch = start_epoch - 1
        if dist_utils.is_main():
            console.print(f"[yellow]resuming {desc} from {checkpoint} "
                          f"(epoch {start_epoch}/{epochs} done)")
    t0 = time.perf_counter()
    show = dist_utils.is_main()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, disable=not show, transient=False)
    with progress:
        bar_epochs = progress.add_task(f"{desc} epochs", total=epochs, completed=start_epoch,
                                       info="")
        bar_steps = progress.add_task(f"{desc} steps", total=task.steps_in_epoch(), info="")
        for epoch in range(start_epoch, epochs):
            task.begin_epoch(epoch, epochs)
            progress.reset(bar_steps, total=task.steps_in_epoch())
            sums: dict[str, float] = {}
            n_steps = 0
            for step, batch in enumerate(task.batches(epoch)):
                logs = task.step(batch)
                n_steps += 1
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                loss = logs.get("loss")
                if loss is not None and not math.isfinite(loss):
                    where = (f"epoch {epoch} step {step}" + (
                        f"; the last good checkpoint {checkpoint} (after epoch {epoch - 1}) "
                        f"is kept"
                        if checkpoint.is_file() else "; no checkpoint had been written yet"))
                    raise NonFiniteLossError(f"{desc}: loss became {loss} at {where}. Lower "
                                             f"the learning rate or check the data.")
                progress.update(bar_steps, advance=1,
                                info=" ".join(f"{k}={v:.3g}" for k, v in logs.items()))
            # per-epoch means of the step scalars, then what the epoch's end reports
            logs = {"epoch": float(epoch), **{k: v / max(n_steps, 1) for k, v in sums.items()},
                    **task.end_epoch(epoch)}
            result.history.append(logs)
            seconds = elapsed_before + time.perf_counter() - t0
            if dist_utils.is_main():
                atomic_torch_save({"epoch": epoch, "fingerprint": fingerprint,
                                   "task": task.state_dict(),
                                   "history": result.history, "seconds": seconds,
                                   "rng": torch.get_rng_state()}, checkpoint)
            dist_utils.barrier()
            progress.update(bar_epochs, advance=1,
                            info=" ".join(f"{k}={v:.4g}" for k, v in logs.items()
                                          if k != "epoch"))
            if on_epoch is not None:
                on_epoch(epoch, logs)
    result.seconds = elapsed_before + time.perf_counter() - t0
    return result


def set_loader_epoch(loader: Any, epoch: int, seed: int) -> None:
    """Make the shuffle order a function of (seed, epoch) so a resumed epoch sees the same
    batches as an uninterrupted one (DistributedSampler.set_epoch, or re-seeding the loader's
    generator for single-process runs)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    gen = getattr(loader, "generator", None)
    if gen is not None:
        gen.manual_seed(seed * 100_003 + epoch)
    inner = getattr(sampler, "generator", None)
    if inner is not None and inner is not gen:
        inner.manual_seed(seed * 100_003 + epoch)


def fingerprint(*parts: Any) -> str:
    """A short digest of a run's settings (settings models, dataclasses, dicts, strings)."""
    import dataclasses
    import hashlib
    import json

    from pydantic import BaseModel

    def plain(obj: Any) -> Any:
        if isinstance(obj, BaseModel):
            return obj.model_dump()
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        return obj
    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
