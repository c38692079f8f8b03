"""The one epoch loop shared by every search method and by retraining.

It owns what every long run needs and no method should re-implement: rich progress bars,
an atomic checkpoint after every epoch, resume from that checkpoint when the same command is
run again after a kill, a stop on a non-finite loss (keeping the last good checkpoint), and
per-epoch RNG handling so that a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from backbones import distributed as dist_utils
from backbones.resume import check_finite, read_state, rng_state, save_state, set_rng_state


class LoopTask(Protocol):
    """What the loop drives: a search method adapter or the retraining task."""

    def begin_epoch(self, epoch: int, total: int) -> None: ...

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def steps_in_epoch(self) -> int: ...

    def step(self, batch: Any) -> dict[str, float]: ...

    def end_epoch(self, epoch: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # optional: ``watched() -> dict[str, Tensor]``, tensors checked for NaN/inf after each step
    # besides the logged scalars (a search method's architecture parameters)


@dataclass
class LoopResult:
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int | None = None  # last completed epoch found in the checkpoint
    seconds: float = 0.0                    # wall time over all runs, including killed ones
    #: steps run and their wall time (the step alone: no data loading, evaluation or
    #: checkpointing), over the completed epochs of all runs
    steps: int = 0
    step_seconds: float = 0.0
    #: every ``log_every``-th step's scalars with its global ``step``, over completed epochs
    step_history: list[dict[str, float]] = field(default_factory=list)


def _take(it: Iterable[Any], n: int) -> Iterator[Any]:
    for i, item in enumerate(it):
        if i >= n:
            return
        yield item


def run_loop(task: LoopTask, *, epochs: int, checkpoint: Path, desc: str,
             fingerprint: dict[str, str], console: Console | None = None,
             on_epoch: Callable[[LoopResult], None] | None = None,
             log_every: int = 0) -> LoopResult:
    """Run ``epochs`` epochs of ``task``, resuming from ``checkpoint`` if it exists.

    The checkpoint holds the task state, the history, the elapsed seconds and every RNG state
    (torch CPU and CUDA, numpy, Python) at the end of the epoch; it is written atomically (rank
    0 only) and read back only with the same ``fingerprint`` (``backbones.resume``: settings,
    code, versions, data, world size, ...); otherwise the run starts over and says which parts
    changed. After every step the logged scalars and the task's
    ``watched()`` tensors are checked; a non-finite one stops every rank (the decision is
    all-reduced) with the same message, before anything of that epoch is written. ``on_epoch``
    gets the result so far (whole history) after each epoch's checkpoint, on the main rank;
    with ``log_every`` = N > 0 every N-th step's scalars are kept too (``step_history``: only
    completed epochs', so a resumed run never holds a step twice)."""
    console = console or Console(stderr=True)
    result = LoopResult()
    start_epoch = 0
    elapsed_before = 0.0

    def say(message: str) -> None:
        if dist_utils.is_main():
            console.print(f"[yellow]{message}")
    state = read_state(checkpoint, fingerprint, required=_STATE_KEYS, what=desc, log=say)
    if state is not None:
        task.load_state_dict(state["task"])
        result.history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
        elapsed_before = float(state["seconds"])
        result.steps = int(state.get("steps", 0))
        result.step_seconds = float(state.get("step_seconds", 0.0))
        result.step_history = list(state.get("step_history", []))
        set_rng_state(state["rng"])
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
            n_steps, step_seconds = 0, 0.0
            sampled: list[dict[str, float]] = []
            for step, batch in enumerate(task.batches(epoch)):
                t_step = time.perf_counter()
                logs = task.step(batch)      # returns host floats: the device has finished
                step_seconds += time.perf_counter() - t_step
                n_steps += 1
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                if log_every and (result.steps + n_steps) % log_every == 0:
                    sampled.append({"step": float(result.steps + n_steps), **logs})
                check_finite(logs, _watched(task), f"{desc}: epoch {epoch} step {step}",
                             checkpoint, epoch)
                progress.update(bar_steps, advance=1,
                                info=" ".join(f"{k}={v:.3g}" for k, v in logs.items()))
            # per-epoch means of the step scalars, then what the epoch's end reports
            logs = {"epoch": float(epoch), **{k: v / max(n_steps, 1) for k, v in sums.items()},
                    **task.end_epoch(epoch)}
            check_finite(logs, {}, f"{desc}: end of epoch {epoch}", checkpoint, epoch)
            result.history.append(logs)
            result.step_history += sampled
            result.steps += n_steps
            result.step_seconds += step_seconds
            seconds = elapsed_before + time.perf_counter() - t0
            if dist_utils.is_main():
                save_state(checkpoint, fingerprint,
                           {"epoch": epoch, "task": task.state_dict(),
                            "history": result.history, "seconds": seconds,
                            "steps": result.steps, "step_seconds": result.step_seconds,
                            "step_history": result.step_history, "rng": rng_state()})
            dist_utils.barrier()
            progress.update(bar_epochs, advance=1,
                            info=" ".join(f"{k}={v:.4g}" for k, v in logs.items()
                                          if k != "epoch"))
            if on_epoch is not None and dist_utils.is_main():
                on_epoch(result)              # the whole history so far (curves)
    result.seconds = elapsed_before + time.perf_counter() - t0
    return result


_STATE_KEYS = ("epoch", "task", "history", "seconds", "rng")


def _watched(task: LoopTask) -> dict[str, torch.Tensor]:
    watched = getattr(task, "watched", None)
    return watched() if watched is not None else {}


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
