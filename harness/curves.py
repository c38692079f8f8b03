"""Per-epoch curves through DVC's own logger (dvclive): ``<run folder>/dvclive/``.

dvclive writes ``plots/metrics/<name>.tsv`` (one row per epoch, the scalars a search method or
the retraining loop logs) and ``metrics.json`` (the last epoch); ``dvc.yaml`` declares the
folders as plots, so ``dvc plots show`` / ``dvc plots diff`` and ``dvc exp show`` display them
with no script of ours. The folder is rewritten from the run's whole history after every
epoch (main rank), so after a resume it holds exactly the epochs the checkpoint holds, none
twice. dvclive is told not to touch ``dvc.yaml`` or to make experiments of its own.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from backbones.offline_live import offline_live

CURVES_DIR = "dvclive"
#: every N-th step's scalars (``log_every``), x = the global step
STEP_CURVES_DIR = "dvclive-steps"
#: the folder of the per-metric TSV files under CURVES_DIR (dvc.yaml's plots point at it)
PLOTS_SUBDIR = "plots/metrics"


def write_curves(folder: Path, history: Sequence[Mapping[str, float]], *,
                 step_key: str = "epoch", x_from_key: bool = False) -> None:
    """Log every finite scalar of every row of ``history`` (not ``step_key``); the x axis is the
    row's index, or its ``step_key`` value with ``x_from_key``."""
    from dvclive import Live
    with offline_live(), Live(dir=str(folder), resume=False, save_dvc_exp=False, dvcyaml=None,
                              report=None, monitor_system=False) as live:
        for i, row in enumerate(history):
            live.step = int(row[step_key]) if x_from_key else i
            for key, value in row.items():
                if key != step_key and isinstance(value, (int, float)) and math.isfinite(value):
                    live.log_metric(key, float(value))
    (folder / PLOTS_SUBDIR).mkdir(parents=True, exist_ok=True)   # also for a run without
    # epochs (random search): dvc.yaml declares the folder


def write_loop_curves(run: Path, history: Sequence[Mapping[str, float]],
                      step_history: Sequence[Mapping[str, float]] = ()) -> None:
    """A run's epoch curves, and its every-N-step curves when it keeps any."""
    write_curves(run / CURVES_DIR, history)
    if step_history:
        write_curves(run / STEP_CURVES_DIR, step_history, step_key="step", x_from_key=True)
