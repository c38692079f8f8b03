"""Reading the inputs: every ``metrics.json`` under the runs folders (validated by
``harness.records``), and the papers' numbers (``results/paper_numbers.csv``).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.curves import CURVES_DIR, STEP_CURVES_DIR
from harness.records import DISTANCE_ALIASES, RECORDS, RecordError, parse_record
from harness.report.tables import commit_label
from harness.report.vocabulary import DISTANCE_LABELS, TABLE_43


PAPER_NUMBERS_CSV = "paper_numbers.csv"
PAPER_COLUMNS = ["paper", "method", "dataset", "table", "setting", "metric", "value", "unit", "source"]
PAPER_METRICS = {"top1", "top5", "top1_error", "top5_error", "search_cost", "memory", "params",
                 "ops", "search_speedup_vs_prior_art", "search_speedup_vs_pcdarts"}


#: folders of per-epoch / per-step curves inside a run folder; their metrics.json is
#: dvclive's summary, not a record
CURVE_DIRS = {CURVES_DIR, STEP_CURVES_DIR}


class ReportError(ValueError):
    """Invalid or missing report input; the message names the file (and key)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


def _ablation_fields(abl: dict | None) -> dict:
    if not abl:
        return {"ablation_key": "", "variant": "main", "abl_table": "", "abl_tangent": None,
                "abl_recon": None, "abl_distance": "", "abl_second_order": ""}
    abl = dict(abl)
    table = abl["table"]
    out = {"abl_table": table, "abl_tangent": None, "abl_recon": None, "abl_distance": "",
           "abl_second_order": str(abl.get("second_order", ""))}
    if table == "4.2":
        out["abl_tangent"], out["abl_recon"] = abl["tangent"], abl["recon"]
        variant = (f"T4.2: tangent {'on' if abl['tangent'] else 'off'}, "
                   f"L_R {'on' if abl['recon'] else 'off'}")
    elif table == TABLE_43 and "second_order" in abl:
        variant = f"T4.3: {abl.get('label') or 'second order ' + str(abl['second_order'])}"
    elif table in ("4.4.7", "speed") and abl.get("label"):
        variant = f"{'§4.4.7' if table == '4.4.7' else 'speed'}: {abl['label']}"
    elif table == "4.4":
        abl["distance"] = DISTANCE_ALIASES[abl["distance"].lower()]
        out["abl_distance"] = abl["distance"]
        variant = f"T4.4: distance {DISTANCE_LABELS[abl['distance']]}"
    else:
        variant = "ablation " + json.dumps(abl, sort_keys=True)
    out["ablation_key"] = json.dumps(abl, sort_keys=True, separators=(",", ":"))
    out["variant"] = variant
    return out


def _run_key(r: dict) -> tuple:
    extra = {"detect": r.get("detector"), "reid": r.get("loss"),
             "deploy": r.get("run")}.get(r["stage"], "")
    return (r["stage"], r["method"], r["seed"], r["ablation_key"], r["dataset"], r["profile"], extra)


RunsDirs = Path | str | Sequence[Path | str]


def as_dirs(runs_dir: RunsDirs) -> list[Path]:
    return ([Path(runs_dir)] if isinstance(runs_dir, (str, Path))
            else list(dict.fromkeys(Path(r) for r in runs_dir)))


def load_metrics(runs_dir: RunsDirs) -> pd.DataFrame:
    """Load and validate every ``metrics.json`` under ``runs_dir`` (recursively; one folder or
    several, e.g. the active profile's runs and its ImageNet-search profile's).

    Returns one row per file with the file's keys plus ``path`` and the derived ablation
    columns ``ablation_key`` ("" for the main run), ``variant`` (readable label),
    ``abl_table``, ``abl_tangent``, ``abl_recon``, ``abl_distance``. Raises ReportError
    (listing every problem, each naming its file and key) on any invalid file, on an
    empty / missing runs dir, and on duplicate runs."""
    dirs = as_dirs(runs_dir)
    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        raise ReportError(f"{missing[0]}: runs directory does not exist")
    # a run's record; the curves' own metrics.json (dvclive) is not one
    files = sorted(f for d in dirs for f in d.rglob("metrics.json")
                   if not CURVE_DIRS & set(f.relative_to(d).parts[:-1]))
    if not files:
        raise ReportError(f"{', '.join(map(str, dirs))}: no metrics.json files found (searched "
                          "recursively); run the pipeline first")
    records, problems = [], []
    for f in files:
        where = str(f)
        try:
            rec = parse_record(f.read_bytes(), where)
        except OSError as e:
            problems.append(f"{where}: cannot be read ({e})")
            continue
        except RecordError as e:
            problems.extend(e.problems)
            continue
        # the keys the file holds (as validated), not the defaults of the ones it lacks
        row = rec.model_dump(exclude_unset=True)
        abl = rec.ablation.model_dump() if rec.ablation else None
        row["ablation"] = abl
        row.update(_ablation_fields(abl))
        row["path"] = where
        row["commit"] = commit_label(rec)
        records.append(row)
    if not problems:
        seen: dict[tuple, str] = {}
        for r in records:
            k = _run_key(r)
            if k in seen:
                problems.append(f"{r['path']}: duplicate run (same stage, method, seed, ablation, "
                                f"dataset, profile) as {seen[k]}")
            else:
                seen[k] = r["path"]
    if problems:
        head = (f"{len(problems)} problem(s) in the metrics files under {', '.join(map(str, dirs))}:"
                if len(problems) > 1 else "invalid metrics file:")
        raise ReportError(head + "\n  " + "\n  ".join(problems), problems)
    front = ["path", "stage", "method", "seed", "profile", "commit", "dataset", "device",
             "device_kind",
             "variant", "ablation_key", "abl_table", "abl_tangent", "abl_recon", "abl_distance",
             "abl_second_order", "ablation"]
    df = pd.DataFrame.from_records(records)
    # every schema column exists (NaN where a stage lacks it) so that stage subsets can be
    # grouped / selected whichever stages are present
    for model in RECORDS.values():
        for key in model.model_fields:
            if key not in df.columns:
                df[key] = None
    return df[front + [c for c in df.columns if c not in front]]


def default_paper_numbers_path() -> Path:
    here = Path(__file__).resolve().parents[1] / "results" / PAPER_NUMBERS_CSV
    if here.is_file():
        return here
    return Path.cwd() / "results" / PAPER_NUMBERS_CSV


def load_paper_numbers(path: Path | str | None = None) -> pd.DataFrame:
    """Read and validate ``results/paper_numbers.csv`` (value as float, table as str)."""
    path = Path(path) if path is not None else default_paper_numbers_path()
    if not path.is_file():
        raise ReportError(f"{path}: paper numbers file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot parse CSV ({e})") from e
    if list(df.columns) != PAPER_COLUMNS:
        raise ReportError(f"{path}: expected columns {','.join(PAPER_COLUMNS)}, got {','.join(df.columns)}")
    problems = []
    values = []
    for i, row in df.iterrows():
        line = i + 2
        for col in ("paper", "method", "dataset", "setting", "metric", "unit", "source"):
            if not row[col].strip():
                problems.append(f"{path}: line {line}: empty '{col}'")
        if row["metric"] not in PAPER_METRICS:
            problems.append(f"{path}: line {line}: unknown metric {row['metric']!r}")
        try:
            v = float(row["value"])
            if not math.isfinite(v):
                raise ValueError
        except ValueError:
            problems.append(f"{path}: line {line}: 'value' {row['value']!r} is not a number")
            v = math.nan
        values.append(v)
    if problems:
        raise ReportError("invalid paper numbers:\n  " + "\n  ".join(problems), problems)
    df["value_text"] = df["value"].str.strip()  # as written, e.g. "63.0"
    df["value"] = values
    return df
