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

CURVES_DIR = "dvclive"
#: the folder of the per-metric TSV files under CURVES_DIR (dvc.yaml's plots point at it)
PLOTS_SUBDIR = "plots/metrics"


def write_curves(folder: Path, history: Sequence[Mapping[str, float]], *,
                 step_key: str = "epoch") -> None:
    """Log every finite scalar of every epoch of ``history`` (``step_key`` is the x axis)."""
    from dvclive import Live
    with Live(dir=str(folder), resume=False, save_dvc_exp=False, dvcyaml=None, report=None,
              monitor_system=False) as live:
        for row in history:
            for key, value in row.items():
                if key != step_key and isinstance(value, (int, float)) and math.isfinite(value):
                    live.log_metric(key, float(value))
            live.next_step()
    (folder / PLOTS_SUBDIR).mkdir(parents=True, exist_ok=True)   # also for a run without
    # epochs (random search): dvc.yaml declares the folder
