"""Reproduction report: tables, plots and claim verdicts from the pipeline's metrics files.

Rooms: ``loading`` (metrics files, paper numbers), ``selection`` (which runs and paper rows a
row looks at), ``stats`` (seed statistics), ``vocabulary`` (labels, regimes, tolerances),
``tables`` / ``table43`` / ``protocol`` (the tables), ``plots``, the claims (``claims``,
``verdicts``, ``accuracy_claims``, ``cost_claims``), ``render`` (Markdown, console, REPORT.md);
this module builds the whole report.

The report is built from the ``metrics.json`` files under a runs directory alone (found
recursively) plus the reference numbers in ``results/paper_numbers.csv``. It reads JSON
only and never imports torch.

Public API
----------
``load_metrics(runs_dir) -> DataFrame``        one validated row per metrics file (``path`` column)
``load_paper_numbers(path=None) -> DataFrame`` the paper reference numbers
``build_report(runs_dir, out_dir, console=None) -> dict[str, DataFrame]``
                                               writes ``<table>.md``/``.csv``, ``plots/*.png``,
                                               ``REPORT.md`` (atomically) and prints rich tables
``ReportError``                                 raised for invalid / missing inputs

Metrics files: one pydantic model per stage in ``harness/records.py`` (the stages write
them, ``loading`` reads them with ``parse_record``). Two files describing the same run
(stage, method, seed, ablation, dataset, profile, and detector / loss / deploy run) are an
error too.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from harness.records import STAGES
from harness.report.claims import claims_frame, evaluate_claims
from harness.report.loading import (ReportError, RunsDirs, as_dirs,
                                    default_paper_numbers_path, load_metrics, load_paper_numbers)
from harness.report.protocol import build_end_to_end
from harness.report.render import (TABLE_NAMES, TABLE_TITLES, atomic_write, markdown_with_notes,
                                   print_table, render_report)
from harness.report.selection import COLLAPSE_SKIPS
from harness.report.table43 import NOTES, build_table_43, load_bench
from harness.report.tables import (DEPLOY_NOTES, build_ablation_distance,
                                   build_ablation_tangent_lr, build_classification,
                                   build_classification_vs_paper, devices_note,
                                   build_deployment, build_detection, build_reid,
                                   build_runs_summary, build_search_cost, provenance_note)

log = logging.getLogger(__name__)

__all__ = ["ReportError", "TABLE_NAMES", "build_classification", "build_report",
           "default_paper_numbers_path", "load_metrics", "load_paper_numbers"]


#: the stages whose runs make each table's rows
TABLE_STAGES = {"classification": ("train", "search"), "search_cost": ("search",),
                "classification_vs_paper": ("train", "search"),
                "table_4_3": ("search", "train"),
                "end_to_end_cost": STAGES,
                "ablation_tangent_lr": ("train", "search"),
                "ablation_distance": ("train", "search"), "detection": ("detect",),
                "reid": ("reid",), "deployment": ("deploy",)}


def _table_runs(metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    return metrics[metrics["stage"].isin(TABLE_STAGES[name])]


def build_report(runs_dir: RunsDirs, out_dir: Path, console=None,
                 paper_numbers: Path | None = None) -> dict[str, pd.DataFrame]:
    """Load and validate the metrics under ``runs_dir``; write the tables (``<name>.md`` and
    ``<name>.csv``), ``plots/*.png``, ``metrics_index.csv`` and ``REPORT.md`` to ``out_dir``
    (each file atomically); print the tables with rich. Returns the tables by name.

    Raises ReportError (nothing is written) when an input is invalid."""
    from rich.console import Console

    from harness.report.plots import make_plots   # matplotlib: only when a report is built

    runs_dir, out_dir = as_dirs(runs_dir), Path(out_dir)
    console = console if console is not None else Console()
    paper_path = Path(paper_numbers) if paper_numbers is not None else default_paper_numbers_path()
    metrics = load_metrics(runs_dir)
    paper = load_paper_numbers(paper_path)

    tables: dict[str, pd.DataFrame] = {}
    notes: dict[str, list[str]] = {}
    tables["runs_summary"] = build_runs_summary(metrics)
    candidates = {
        "classification": (build_classification(metrics, paper), []),
        "classification_vs_paper": (build_classification_vs_paper(metrics, paper),
                                    ["The papers' numbers for the method whatever the dataset; "
                                     "Δ = measured − paper only when the dataset matches "
                                     "(cifar10 ↔ CIFAR-10, imagenet ↔ ImageNet) and the profile is "
                                     "not smoke. Sources: docs/papers.md."]),
        "end_to_end_cost": (build_end_to_end(metrics),
                            ["Mean per seed of each stage's process-seconds (wall seconds x "
                             "processes) for the method's main runs; transfer is the detection "
                             "and re-ID training of the backbone of the same name."]),
        "search_cost": (build_search_cost(metrics, paper),
                        ["Search cost in the unit measured: CPU-hours on CPU, GPU-days on a GPU; "
                         "only GPU-days on the paper's dataset and a non-smoke profile compare with "
                         "the paper."]),
        "table_4_3": (build_table_43(metrics, paper, load_bench(paper_path.parent)),
                      NOTES),
        "ablation_tangent_lr": build_ablation_tangent_lr(metrics, paper),
        "ablation_distance": build_ablation_distance(metrics, paper),
        "detection": (build_detection(metrics), []),
        "reid": (build_reid(metrics), []),
        "deployment": (build_deployment(metrics), DEPLOY_NOTES),
    }
    cls_notes = ["Protocol (Yang et al., ICLR 2020): 'N independent searches, each retrained once' "
                 "means every seed searched its own cell and retrained it once; top-1 is the "
                 "mean ± std over those N; the best-of-N column is the maximum, marked as such "
                 "(not what one search gives). A 'MIXED' protocol is not a mean over independent "
                 "searches. RI = 100 (acc − acc_random) / acc_random per run, acc_random the "
                 f"mean of the random-architecture runs. Skips: skip-connects in each search's "
                 f"normal cell; more than {COLLAPSE_SKIPS} counts as collapsed.",
                 "Top-1 / top-5: mean ± sample std (ddof=1) over seeds (one value where n seeds is "
                 "1) of the final epoch. Best-epoch top-1: the best test epoch of the last training "
                 "step, which is what the official DCP-NAS scripts report (it selects on the test "
                 "set). The papers' numbers: table classification_vs_paper.",
                 "OPs = FLOPs + BOPs/64 (M); memory counts 1 bit per binary and 32 per real weight.",
                 devices_note(metrics, ("train",))]
    candidates["classification"] = (candidates["classification"][0], cls_notes)
    for name, (df, n) in candidates.items():
        if df.empty:
            log.info("table %s: no data, not produced", name)
            continue
        tables[name] = df
        notes[name] = [*n, provenance_note(_table_runs(metrics, name))]
    claim_results = evaluate_claims(metrics, paper)
    tables["claims"] = claims_frame(claim_results)

    # --- write (inputs are valid from here on)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLE_NAMES:
        if name in tables:
            atomic_write(out_dir / f"{name}.md", markdown_with_notes(tables[name], notes.get(name, [])))
            atomic_write(out_dir / f"{name}.csv", tables[name].to_csv(index=False))
        else:
            for ext in (".md", ".csv"):
                stale = out_dir / f"{name}{ext}"
                if stale.exists():
                    log.info("removing stale %s", stale)
                    stale.unlink()
    index = metrics.copy()
    index["ablation"] = index["ablation"].map(lambda a: json.dumps(a, sort_keys=True) if a else "")
    atomic_write(out_dir / "metrics_index.csv", index.to_csv(index=False))
    plots = make_plots(metrics, paper, out_dir / "plots")
    atomic_write(out_dir / "REPORT.md",
                  render_report(runs_dir, out_dir, paper_path, metrics, tables, notes, plots,
                                 claim_results, paper))

    for name in TABLE_NAMES:
        if name in tables and name != "claims":
            print_table(console, TABLE_TITLES[name], tables[name], notes.get(name, []))
    print_table(console, TABLE_TITLES["claims"], tables["claims"][["id", "verdict", "why"]], [])
    console.print(f"Report written to {out_dir / 'REPORT.md'} ({len(plots)} plots)", highlight=False)
    return tables
