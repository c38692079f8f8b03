"""Reproduction report: tables, plots and claim verdicts from the pipeline's metrics files.

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
them, this module reads them with ``read_record``). Two files describing the same run
(stage, method, seed, ablation, dataset, profile, and detector / loss / deploy run) are an
error too.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from backbones.atomic import atomic_write_bytes

from harness import claims as C
from harness import protocol as PR
from harness import table43 as T43
from harness.records import (DISTANCE_ALIASES, RECORDS, STAGES, RecordBase, RecordError,
                             parse_record)
from harness.claims import Stats, fmt_num, fmt_stats, seed_stats

log = logging.getLogger(__name__)

PAPER_NUMBERS_CSV = "paper_numbers.csv"
PAPER_COLUMNS = ["paper", "method", "dataset", "table", "setting", "metric", "value", "unit", "source"]
PAPER_METRICS = {"top1", "top5", "top1_error", "top5_error", "search_cost", "memory", "params",
                 "ops", "search_speedup_vs_prior_art", "search_speedup_vs_pcdarts"}

#: every table build_report may write (stale files of tables not produced are removed)
TABLE_NAMES = ("runs_summary", "classification", "end_to_end_cost", "search_cost",
               "table_4_3", "ablation_tangent_lr", "ablation_distance", "detection", "reid", "deployment",
               "claims")

BEST_HEADER = "best of N top-1 (%) [max, not a mean]"
RI_HEADER = "RI vs random (%)"
DELTA_HEADER = "Δ top-1 (measured − paper)"
DELTA5_HEADER = "Δ top-5 (measured − paper)"
PAPER1_HEADER = "paper top-1 % (dataset, source)"
PAPER5_HEADER = "paper top-5 % (dataset, source)"


class ReportError(ValueError):
    """Invalid or missing report input; the message names the file (and key)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


# ------------------------------------------------------------------------------ loading
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
    elif table == C.TABLE_43 and "second_order" in abl:
        variant = f"T4.3: {abl.get('label') or 'second order ' + str(abl['second_order'])}"
    elif table in ("4.4.7", "speed") and abl.get("label"):
        variant = f"{'§4.4.7' if table == '4.4.7' else 'speed'}: {abl['label']}"
    elif table == "4.4":
        abl["distance"] = DISTANCE_ALIASES[abl["distance"].lower()]
        out["abl_distance"] = abl["distance"]
        variant = f"T4.4: distance {C.DISTANCE_LABELS[abl['distance']]}"
    else:
        variant = "ablation " + json.dumps(abl, sort_keys=True)
    out["ablation_key"] = json.dumps(abl, sort_keys=True, separators=(",", ":"))
    out["variant"] = variant
    return out


def _commit_label(rec: RecordBase) -> str:
    """The commit that made a record, short, with '+dirty' for uncommitted changes; 'unknown'
    for a file written before records carried their provenance."""
    prov = rec.provenance
    if prov is None or not prov.commit:
        return "unknown"
    return prov.commit[:10] + ("+dirty" if prov.dirty else "")


def provenance_cell(runs: pd.DataFrame) -> str:
    """'' when the runs behind a table row share one commit and one profile, else a warning
    naming what they mix (a row should compare like with like)."""
    parts = []
    for col, what in (("commit", "commits"), ("profile", "profiles")):
        values = sorted(set(runs[col].dropna())) if col in runs else []
        if len(values) > 1:
            parts.append(f"mixed {what}: {', '.join(map(str, values))}")
    return "; ".join(parts)


def provenance_note(runs: pd.DataFrame) -> str:
    """Which commits and profiles a table's rows come from (runs per commit)."""
    counts = runs["commit"].value_counts()
    commits = ", ".join(f"{c} ({n} run{'s' if n > 1 else ''})" for c, n in counts.items())
    profiles = ", ".join(sorted(set(runs["profile"]), key=C.profile_sort_key))
    return f"Provenance: commit {commits}; profile {profiles} (`harness provenance <run>` for one run)."


def _with_provenance(df: pd.DataFrame, cells: list[str]) -> pd.DataFrame:
    """Add the 'provenance' column when some row mixes commits or profiles."""
    if any(cells):
        df = df.copy()
        df["provenance"] = cells
    return df


def _run_key(r: dict) -> tuple:
    extra = {"detect": r.get("detector"), "reid": r.get("loss"),
             "deploy": r.get("run")}.get(r["stage"], "")
    return (r["stage"], r["method"], r["seed"], r["ablation_key"], r["dataset"], r["profile"], extra)


RunsDirs = Path | str | Sequence[Path | str]


def _as_dirs(runs_dir: RunsDirs) -> list[Path]:
    return ([Path(runs_dir)] if isinstance(runs_dir, (str, Path))
            else list(dict.fromkeys(Path(r) for r in runs_dir)))


def _dirs_label(dirs: list[Path]) -> str:
    return ", ".join(f"`{d}`" for d in dirs)


def load_metrics(runs_dir: RunsDirs) -> pd.DataFrame:
    """Load and validate every ``metrics.json`` under ``runs_dir`` (recursively; one folder or
    several, e.g. the active profile's runs and its ImageNet-search profile's).

    Returns one row per file with the file's keys plus ``path`` and the derived ablation
    columns ``ablation_key`` ("" for the main run), ``variant`` (readable label),
    ``abl_table``, ``abl_tangent``, ``abl_recon``, ``abl_distance``. Raises ReportError
    (listing every problem, each naming its file and key) on any invalid file, on an
    empty / missing runs dir, and on duplicate runs."""
    dirs = _as_dirs(runs_dir)
    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        raise ReportError(f"{missing[0]}: runs directory does not exist")
    files = sorted(f for d in dirs for f in d.rglob("metrics.json"))
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
        row["commit"] = _commit_label(rec)
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


# ------------------------------------------------------------------------------ helpers
def _stats(df: pd.DataFrame, col: str) -> Stats:
    if df.empty or col not in df:
        return Stats(math.nan, math.nan, 0)
    return seed_stats(df[col].tolist())


def _devices(df: pd.DataFrame) -> str:
    return ", ".join(sorted(set(df["device"]))) if not df.empty else "—"


def _stage(metrics: pd.DataFrame, stage: str) -> pd.DataFrame:
    return metrics[metrics["stage"] == stage]


def search_rows_for(search: pd.DataFrame, method: str, ablation_key: str, dataset: str,
                    profile: str, seeds) -> tuple[pd.DataFrame, str]:
    """Search metrics of the same method/seed/ablation/dataset/profile as a train run.

    When none exists on the train dataset but the method was searched on exactly one other
    dataset (search on CIFAR-10, retrain on ImageNet), those rows are used and the note
    says so."""
    if search.empty:
        return search, ""
    s = search[(search["method"] == method) & (search["ablation_key"] == ablation_key)
               & (search["profile"] == profile) & (search["seed"].isin(list(seeds)))]
    exact = s[s["dataset"] == dataset]
    if not exact.empty:
        return exact, ""
    if s["dataset"].nunique() == 1:
        return s, f"searched on {s['dataset'].iloc[0]}"
    return s.iloc[0:0], ""


def _search_cost_cell(rows: pd.DataFrame, note: str = "") -> str:
    if rows.empty:
        return "— (no search run)"
    parts = [f"{fmt_stats(seed_stats(g['search_cost_value']), '.3g')} {unit}"
             for unit, g in sorted(rows.groupby("search_cost_unit"))]
    return "; ".join(parts) + (f" ({note})" if note else "")


class _PaperEntry:
    def __init__(self, value: float, text: str, dataset: str, label: str, short: str,
                 ambiguous: bool = False):
        self.value, self.text, self.dataset = value, text, dataset
        self.label, self.short, self.ambiguous = label, short, ambiguous


def _paper_entries(paper: pd.DataFrame, method: str, settings, metric: str) -> list[_PaperEntry]:
    metrics = ("top1", "top1_error") if metric == "top1" else (metric,)
    rows = C.paper_rows(paper, method=method, metric=metrics, settings=settings)
    out = []
    for _, r in rows.iterrows():
        v = C.paper_top1(r) if metric == "top1" else float(r["value"])
        src = C.short_source(r)
        setting = r["setting"]
        if r["metric"] == "top1_error":
            label, short = f"{src}: 100 − {C.paper_text(r)} error", "third-party"
        elif setting == C.SETTING_MAIN:
            label, short = src, str(r["paper"])
        elif setting in C.HEADLINE_SETTINGS:  # "DCP-NAS-L; ..." -> model name only
            short = setting.split(";")[0]
            label = f"{src}, {short}"
        else:  # an ablation cell: the table row / variant already names the setting
            label, short = src, setting
        ambiguous = setting == C.SETTING_L_ONE
        if ambiguous:
            label = f"{src}, one of tangent/L_R: ambiguous which"
        text = C.paper_top1_text(r) if metric == "top1" else C.paper_text(r)
        out.append(_PaperEntry(v, text, r["dataset"], label, short, ambiguous))
    return out


def _paper_cell(entries: list[_PaperEntry]) -> str:
    if not entries:
        return "—"
    amb = [e for e in entries if e.ambiguous]
    parts = [f"{e.text} ({e.dataset}, {e.label})" for e in entries if not e.ambiguous]
    if amb:
        parts.append(" or ".join(e.text for e in amb) + f" ({amb[0].dataset}, {amb[0].label})")
    return "; ".join(parts)


def _delta_cell(measured: Stats, entries: list[_PaperEntry], dataset: str, profile: str) -> str:
    """measured − paper, only for the same dataset on a non-smoke profile."""
    if measured.n == 0:
        return "n/a (not run)"
    if not entries:
        return "n/a (no paper number)"
    if C.is_smoke(profile):
        return "n/a (smoke data)"
    label = C.dataset_label(dataset)
    match = [e for e in entries if e.dataset == label]
    if not match:
        theirs = ", ".join(sorted({e.dataset for e in entries}))
        return f"n/a (measured on {dataset}, paper on {theirs})"
    many = len(match) > 1
    return "; ".join(f"{measured.mean - e.value:+.2f} vs {e.text}"
                     + (f" ({e.short})" if many else "") for e in match)


def _variant_settings(row: pd.Series) -> list[str] | None:
    """Paper settings that correspond to a train run's variant."""
    if row["ablation_key"] == "":
        return list(C.HEADLINE_SETTINGS)
    if row["abl_table"] == "4.2":
        t, r = bool(row["abl_tangent"]), bool(row["abl_recon"])
        if t and r:
            return [C.SETTING_L_FULL]
        if not t and not r:
            return [C.SETTING_L_NONE]
        return [C.SETTING_L_ONE]
    if row["abl_table"] == "4.4":
        return [C.DISTANCE_SETTINGS[row["abl_distance"]]]
    return None


def _group_sorted(df: pd.DataFrame, keys: list[str]):
    def sk(kv):
        vals = dict(zip(keys, kv[0]))
        return tuple(
            C.method_sort_key(v) if k == "method" else C.profile_sort_key(v) if k == "profile"
            else (v != "", v) if k == "ablation_key" else (str(v),)
            for k, v in vals.items())
    return sorted(df.groupby(keys, sort=False, dropna=False), key=sk)


# ------------------------------------------------------------------------------ tables
def build_runs_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for stage in STAGES:
        g = _stage(metrics, stage)
        if g.empty:
            continue
        rows.append({
            "stage": stage, "files": len(g),
            "profiles": ", ".join(sorted(set(g["profile"]), key=C.profile_sort_key)),
            "datasets": ", ".join(sorted(set(g["dataset"]))),
            "methods": ", ".join(sorted(set(g["method"]), key=C.method_sort_key)),
            "variants": ", ".join(sorted(set(g["variant"]), key=lambda v: (v != "main", v))),
            "seeds": ", ".join(str(s) for s in sorted(set(g["seed"]))),
            "commits": ", ".join(sorted(set(g["commit"]))),
            "devices": _devices(g),
        })
    return pd.DataFrame(rows)


def build_classification(metrics: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    train, search = _stage(metrics, "train"), _stage(metrics, "search")
    rows = []
    groups = sorted(train.groupby(["method", "ablation_key", "dataset", "profile"], sort=False),
                    key=lambda kv: (C.profile_sort_key(kv[0][3]), kv[0][2], kv[0][1] != "",
                                    C.method_sort_key(kv[0][0]), kv[1]["variant"].iloc[0]))
    # rows: best profile first, then dataset; main runs of all methods before ablation variants
    has_best = "best_top1" in train and train["best_top1"].notna().any()
    mixed: list[str] = []
    for (method, akey, dataset, profile), g in groups:
        first = g.iloc[0]
        settings = _variant_settings(first)
        paper_method = C.PUBLISHED_AS.get(method, (method,))[0]   # dcpnas_l -> DCP-NAS-L's rows
        if method in C.PUBLISHED_AS and akey == "":
            settings = [C.SETTING_L_FULL]
        e1 = _paper_entries(paper, paper_method, settings, "top1") if settings else []
        e5 = _paper_entries(paper, paper_method, settings, "top5") if settings else []
        top1, top5 = _stats(g, "top1"), _stats(g, "top5")
        srows, note = search_rows_for(search, method, akey, dataset, profile, g["seed"])
        mixed.append(provenance_cell(pd.concat([g, srows])))
        rand = train[(train["method"] == "random") & (train["ablation_key"] == "")
                     & (train["dataset"] == dataset) & (train["profile"] == profile)]
        rows.append({
            "method": method, "variant": first["variant"], "dataset": dataset, "profile": profile,
            "protocol": PR.row_protocol(g), "n seeds": int(top1.n),
            "top-1 (%)": fmt_stats(top1), BEST_HEADER: PR.best_of_n(g),
            RI_HEADER: PR.fmt_ri(PR.relative_improvement(g, rand)) if method != "random" else "0",
            "skips, normal cell": PR.fmt_skips(C.skip_counts(srows)),
            "top-5 (%)": fmt_stats(top5),
            **({"best-epoch top-1 (%)": fmt_stats(_stats(g, "best_top1"))} if has_best else {}),
            "params (M)": fmt_stats(_stats(g, "params_m"), ".3g"),
            "OPs (M)": fmt_stats(_stats(g, "ops_m"), ".4g"),
            "memory (Mbit)": fmt_stats(_stats(g, "memory_mbit"), ".3g"),
            "search cost": _search_cost_cell(srows, note),
            "device": _devices(g),
            PAPER1_HEADER: _paper_cell(e1), PAPER5_HEADER: _paper_cell(e5),
            DELTA_HEADER: _delta_cell(top1, e1, dataset, profile),
            DELTA5_HEADER: _delta_cell(top5, e5, dataset, profile),
        })
    return _with_provenance(pd.DataFrame(rows), mixed)


def _paper_search_cost_rows(paper: pd.DataFrame, method: str, run: pd.Series) -> pd.DataFrame:
    """The paper search costs a search group compares with: the method's headline and Table
    4.3 rows for a main run; for DCP-NAS's main run and Table 4.3 ablation the Table 4.3 rows
    of the same second order (exact: 27.9; GGN: 2.9, and the headline rows); none for other
    ablations."""
    rows = C.paper_rows(paper, method=method, metric="search_cost")
    exact = rows["setting"].str.contains(C.EXACT_SECOND_ORDER, regex=False)
    t43 = rows["table"] == C.TABLE_43
    if method == "dcpnas" and (run["ablation_key"] == "" or run["abl_table"] == C.TABLE_43):
        # Table 4.3's DCP-NAS-L rows by second order; the headline rows are GGN runs
        so_exact = C.second_order_of(run) == "exact"
        keep = (t43 & (exact if so_exact else ~exact))
        if run["ablation_key"] == "" and not so_exact:
            keep |= rows["setting"].isin(C.HEADLINE_SETTINGS)
        return rows[keep]
    if run["ablation_key"] == "":
        return rows[(rows["setting"].isin(C.HEADLINE_SETTINGS) | t43) & ~exact]
    return rows.iloc[0:0]


def build_search_cost(metrics: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    search = _stage(metrics, "search")
    has_supernet = "supernet_top1" in search and search["supernet_top1"].notna().any()
    rows = []
    for (method, akey, dataset, profile, unit), g in _group_sorted(
            search, ["method", "ablation_key", "dataset", "profile", "search_cost_unit"]):
        prow = _paper_search_cost_rows(paper, method, g.iloc[0])
        pcell = "; ".join(f"{C.paper_text(r)} {r['unit']} ({r['dataset']}, {C.short_source(r)}"
                          + (f", {r['setting']}" if r["setting"] not in C.HEADLINE_SETTINGS
                             and r["setting"] != "Table 4.3" else "") + ")"
                          for _, r in prow.iterrows()) or "—"
        if prow.empty:
            comp = "—"
        else:
            notes = []
            for _, r in prow.iterrows():
                if r["unit"] != "GPU-days":
                    notes.append("no: paper's unit not stated")
                elif C.is_smoke(profile):
                    notes.append("no: smoke data")
                elif unit != r["unit"]:
                    notes.append(f"no: measured in {unit}, paper in {r['unit']}")
                elif C.dataset_label(dataset) != r["dataset"]:
                    notes.append(f"no: searched on {dataset}, paper on {r['dataset']}")
                elif not C.is_paper_scale(profile):
                    notes.append(f"partly: reduced {profile} budget")
                else:
                    notes.append("yes (GPU model may differ)")
            comp = "; ".join(dict.fromkeys(notes))
        row = {
            "method": method, "variant": g.iloc[0]["variant"], "dataset": dataset, "profile": profile,
            "device": _devices(g), "n seeds": len(g),
            "search time (s)": fmt_stats(_stats(g, "search_seconds"), ".1f"),
            "search cost": f"{fmt_stats(_stats(g, 'search_cost_value'), '.3g')} {unit}",
            "peak memory (MB)": fmt_stats(_stats(g, "peak_memory_mb"), ".0f"),
            "epochs": fmt_stats(_stats(g, "epochs"), ".0f"),
        }
        if has_supernet:
            row["supernet top-1 (%)"] = fmt_stats(_stats(g, "supernet_top1"))
        row["paper search cost (dataset, source)"] = pcell
        row["comparable with paper?"] = comp
        rows.append(row)
    return pd.DataFrame(rows)


def _ablation_row_common(cell: C.Cell, entries1, entries5, dataset, profile) -> dict:
    s1, s5 = cell.stats("top1"), cell.stats("top5")
    return {
        "measured from": cell.source, "n seeds": int(s1.n),
        "top-1 (%)": fmt_stats(s1) if s1.n else "not run",
        "top-5 (%)": fmt_stats(s5) if s5.n else "not run",
        PAPER1_HEADER: _paper_cell(entries1), PAPER5_HEADER: _paper_cell(entries5),
        DELTA_HEADER: _delta_cell(s1, entries1, dataset, profile),
        DELTA5_HEADER: _delta_cell(s5, entries5, dataset, profile),
    }


def build_ablation_tangent_lr(metrics: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    cells_by_group = C.tangent_lr_cells(_stage(metrics, "train"))
    rows, used_main = [], False
    setting = {(False, False): C.SETTING_L_NONE, (True, True): C.SETTING_L_FULL,
               (True, False): C.SETTING_L_ONE, (False, True): C.SETTING_L_ONE}
    for (dataset, profile), cells in cells_by_group.items():
        for key in C.TANGENT_LR_CELLS:
            cell = cells[key]
            used_main |= cell.source == C.MAIN_RUN_NOTE
            e1 = _paper_entries(paper, "dcpnas", [setting[key]], "top1")
            e5 = _paper_entries(paper, "dcpnas", [setting[key]], "top5")
            rows.append({"dataset": dataset, "profile": profile,
                         "tangent constraint": "on" if key[0] else "off",
                         "L_R": "on" if key[1] else "off",
                         **_ablation_row_common(cell, e1, e5, dataset, profile)})
    notes = ["Shape of Table 4.2 (DCP-NAS-L, ImageNet in the paper): tangent constraint on/off × "
             "reconstruction loss L_R on/off.",
             "The paper's single-component cells are 68.3 and 68.2 top-1; docs/ALGORITHM.md does not "
             "say which is tangent-only and which is L_R-only, so both are shown for both cells "
             "(ambiguous).",
             "Δ is computed only for non-smoke runs on the paper's dataset."]
    if used_main:
        notes.insert(1, f"Rows with 'measured from' = '{C.MAIN_RUN_NOTE}': no Table 4.2 ablation run "
                        "of the tangent + L_R cell exists, so the main DCP-NAS run (tangent on, L_R on, "
                        "F-norm) stands in for it.")
    return pd.DataFrame(rows), notes


def build_ablation_distance(metrics: pd.DataFrame, paper: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    cells_by_group = C.distance_cells(_stage(metrics, "train"))
    rows, used_main = [], False
    for (dataset, profile), cells in cells_by_group.items():
        for dist in C.DISTANCES:
            cell = cells[dist]
            used_main |= cell.source == C.MAIN_RUN_NOTE
            st = [C.DISTANCE_SETTINGS[dist]]
            rows.append({"dataset": dataset, "profile": profile, "distance": C.DISTANCE_LABELS[dist],
                         **_ablation_row_common(cell, _paper_entries(paper, "dcpnas", st, "top1"),
                                                _paper_entries(paper, "dcpnas", st, "top5"),
                                                dataset, profile)})
    notes = ["Shape of Table 4.4 (DCP-NAS-S, ImageNet in the paper): distance D between the Child's "
             "gradient and the Parent's tangent direction.",
             "Δ is computed only for non-smoke runs on the paper's dataset."]
    if used_main:
        notes.insert(1, f"Rows with 'measured from' = '{C.MAIN_RUN_NOTE}': no Table 4.4 ablation run "
                        "with the F-norm distance exists, so the main DCP-NAS run (F-norm) stands in.")
    return pd.DataFrame(rows), notes


def _transfer_table(metrics: pd.DataFrame, stage: str, keys: dict[str, str],
                    values: dict[str, str]) -> pd.DataFrame:
    """One row per (keys..., ablation variant) of a downstream stage: the key columns (metrics
    column -> table header), the seed count, each value as mean ± std, and the devices."""
    runs = _stage(metrics, stage)
    show_variant = (runs["ablation_key"] != "").any() if not runs.empty else False
    rows, mixed = [], []
    for group, g in _group_sorted(runs, [*keys, "ablation_key"]):
        mixed.append(provenance_cell(g))
        row = {header: value for header, value in zip(keys.values(), group)}
        if show_variant:
            row["variant"] = g.iloc[0]["variant"]
        row["n seeds"] = len(g)
        row.update({header: fmt_stats(_stats(g, col)) for header, col in values.items()})
        row["device"] = _devices(g)
        rows.append(row)
    return _with_provenance(pd.DataFrame(rows), mixed)


def build_detection(metrics: pd.DataFrame) -> pd.DataFrame:
    return _transfer_table(
        metrics, "detect",
        {"method": "backbone", "detector": "detector", "dataset": "dataset", "profile": "profile"},
        {"bbox mAP (%)": "bbox_mAP", "bbox mAP@50 (%)": "bbox_mAP_50"})


def build_reid(metrics: pd.DataFrame) -> pd.DataFrame:
    return _transfer_table(
        metrics, "reid",
        {"method": "backbone", "dataset": "dataset", "profile": "profile", "loss": "loss"},
        {"mAP (%)": "mAP", "Rank-1 (%)": "rank1", "Rank-5 (%)": "rank5", "Rank-10 (%)": "rank10"})


def _triple(e: dict, key: str, sub: str, fmt: str = "{:.2f}") -> str:
    """'binary / fp32 / torch' of one measurement of the three engines."""
    vals = []
    for engine in ("binary_ir", "fp32_ir", "torch"):
        v = (e.get(engine) or {}).get(key)
        v = v.get(sub) if isinstance(v, dict) and sub else v
        vals.append(fmt.format(v) if isinstance(v, (int, float)) else "–")
    return " / ".join(vals)


def _where_time_goes(binary: dict, top: int = 3) -> str:
    """The binary IR's costliest layer types (OpenVINO per-layer counters, 1 thread)."""
    kinds = ((binary.get("per_layer") or {}).get("by_type") or [])[:top]
    return "; ".join(f"{k['layer_type']} [{k['kernel']}] {100 * k['share']:.0f}%" for k in kinds)


def build_deployment(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per deployed network: correctness first, then speed, size and memory."""
    runs = _stage(metrics, "deploy")
    rows = []
    for _, r in runs.sort_values(["run", "seed"]).iterrows():
        e, a = r["engines"], r["agreement"]
        top1 = a.get("top1") or {}
        shape = r.get("input_shape") or []
        rows.append({
            "network": r["run"] + ("" if r["trained"] else " (untrained)"),
            "seed": int(r["seed"]), "input": "x".join(str(v) for v in shape[1:]),
            "BinaryConv / 1-bit convs": f"{int(r['binary_convs'])} / "
                                        f"{int(r['binary_capable_convs'])}",
            "top-1 agreement % (images)": f"{a['binary_ir']['top1_agreement']:.2f} "
                                          f"({a['images']}, {a['on']})",
            "max logit dev. (rel.): binary IR / fp64 floor":
                f"{a['binary_ir']['max_logit_dev_rel']:.2g} / "
                f"{a['torch64']['max_logit_dev_rel']:.2g}",
            "top-1 % PyTorch / binary IR": (f"{top1['torch']:.2f} / {top1['binary_ir']:.2f}"
                                            if top1 else "–"),
            "latency 1 thread ms (binary / FP32 / PyTorch)": _triple(e, "latency_1t",
                                                                     "median_ms"),
            "p90 1 thread ms": _triple(e, "latency_1t", "p90_ms"),
            "latency all threads ms": _triple(e, "latency_all", "median_ms"),
            "speed-up vs FP32 IR: 1 thread / all (OPs predict)":
                f"{r['measured_speedup_1t']:.2f}x / {r['measured_speedup_all']:.2f}x "
                f"({r['predicted_speedup']:.2f}x)",
            "throughput img/s": _triple(e, "throughput", "images_per_s", "{:.1f}"),
            "weights MB (binary IR / FP32 IR / PyTorch state)": " / ".join(
                f"{(e.get(k) or {}).get('weights_bytes', 0) / 1e6:.2f}"
                for k in ("binary_ir", "fp32_ir", "torch")),
            "peak memory MB": _triple(e, "peak_mem_mb", "", "{:.0f}"),
            "binary IR time by layer type": _where_time_goes(e.get("binary_ir") or {}),
            "sign inputs within 1e-6 of 0": (f"{a['sign_inputs_near_zero']} of "
                                             f"{a['sign_inputs']}"
                                             if "sign_inputs" in a else "–"),
            "CPU (threads)": f"{r['cpu_model']} ({int(r['threads_all'])})",
        })
    return pd.DataFrame(rows)


DEPLOY_NOTES = [
    "Engines: binary IR = OpenVINO IR whose binary-weight, binary-input convs are "
    "BinaryConvolution (xnor-popcount on bit-packed u1 kernels, checked in the compiled runtime "
    "graph); FP32 IR = the same function on FP32 kernels; PyTorch = eager, inference mode. "
    "All FP32 precision (no bf16 downcast), batch 1, median (and p90) over the profile's "
    "deploy.runs runs after warm-up; throughput at deploy.throughput_batch, all threads; each "
    "engine measured in its own fresh process.",
    "Speed-up = FP32 IR latency / binary IR latency; 'OPs predict' = (FLOPs + BOPs) / "
    "(FLOPs + BOPs/64), what the counted OPs promise when every binary MAC costs 1/64 of a "
    "FP MAC and the rest costs the same.",
    "Agreement: top-1 of the binary IR vs PyTorch on the same images; the fp64 floor is "
    "PyTorch float64 vs float32 on the same images: sign() is discontinuous, so rounding "
    "differences upstream flip bits in both, and a deviation at the floor is not a bug. The "
    "binary IR's CPU plugin fuses the binarization, BN, PReLU and the scale into the kernels "
    "around each BinaryConvolution (other rounding), so sign inputs within ~1e-6 of 0 "
    "(counted) can flip there and not in PyTorch: the logit "
    "deviation grows with that count while top-1 agreement stays the measure that matters.",
    "Depthwise binary-weight convs (no grouped binary kernel) and convs with real input (the "
    "official layout's 1x1 preprocessing, FactorizedReduce and stem) stay FP32: the per-layer "
    "column says how much of the binary IR's time they take.",
]


# ------------------------------------------------------------------------------ writing
def _atomic_write(path: Path, data: str | bytes) -> None:
    atomic_write_bytes(path, data if isinstance(data, bytes) else data.encode("utf-8"))


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False)


def _md_with_notes(df: pd.DataFrame, notes: list[str]) -> str:
    text = _md(df) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def _print_table(console, name: str, df: pd.DataFrame, notes: list[str]) -> None:
    from rich.table import Table

    from rich.text import Text

    t = Table(title=name, title_style="bold", show_lines=False, header_style="bold cyan")
    for col in df.columns:
        t.add_column(Text(str(col)), overflow="fold")
    for _, r in df.iterrows():  # Text(): cells like "[cifar10/smoke]" are not rich markup
        t.add_row(*(Text(str(v)) for v in r.tolist()))
    console.print(t)
    for n in notes:
        console.print(Text(f"  {n}", style="dim"))


TABLE_TITLES = {
    "runs_summary": "What was run",
    "classification": "Classification (retrained networks)",
    "end_to_end_cost": "End-to-end cost (search + retraining + transfer)",
    "search_cost": "Search cost",
    "table_4_3": "Search strategies on ImageNet (Table 4.3)",
    "ablation_tangent_lr": "Ablation: tangent constraint × L_R (Table 4.2)",
    "ablation_distance": "Ablation: distance D (Table 4.4)",
    "detection": "Transfer: object detection",
    "reid": "Transfer: person re-identification",
    "deployment": "Deployment on bit-packed kernels (OpenVINO CPU)",
    "claims": "Claims",
}


def _paper_notes(paper: pd.DataFrame) -> list[str]:
    """Observations about the reference numbers themselves (computed, not hard-coded)."""
    notes = []
    err = paper[paper["metric"] == "top1_error"]
    own = paper[(paper["metric"] == "top1") & (paper["setting"].isin(C.HEADLINE_SETTINGS))]
    for _, e in err.iterrows():
        for _, o in own[(own["method"] == e["method"]) & (own["dataset"] == e["dataset"])].iterrows():
            conv = C.paper_top1(e)
            if abs(conv - float(o["value"])) > 0.05:
                notes.append(f"{C.method_label(e['method'])} on {e['dataset']}: the third-party table's "
                             f"error {C.paper_text(e)}% means {fmt_num(conv)}% top-1, but {o['paper']} "
                             f"reports {C.paper_text(o)}%; both are listed.")
            else:
                notes.append(f"{C.method_label(e['method'])} on {e['dataset']}: the third-party error "
                             f"{C.paper_text(e)}% agrees with {o['paper']} ({C.paper_text(o)}% top-1).")
    if (paper["setting"] == C.SETTING_L_ONE).any():
        notes.append("Table 4.2: ALGORITHM.md gives 68.3 and 68.2 top-1 for the two single-component "
                     "settings without saying which is which; they are recorded as 'one of tangent/L_R'.")
    unk = paper[(paper["metric"] == "search_cost") & (paper["unit"] != "GPU-days")]
    for _, r in unk.iterrows():
        notes.append(f"{r['paper']}: search cost {C.paper_text(r)} is quoted without a unit "
                     f"({r['unit']}); it is not compared with measured costs.")
    notes.append("DCP-NAS-L (Table 4.2) and DCP-NAS-S (Table 4.4) are different model sizes; the "
                 "harness' main DCP-NAS run stands in for the full cell of both tables. Train metrics "
                 "may carry an optional 'size' (S|L) so the absolute claims use the right run.")
    return notes


def _render_report(runs_dir: list[Path], out_dir: Path, paper_path: Path, metrics: pd.DataFrame,
                   tables: dict[str, pd.DataFrame], notes: dict[str, list[str]],
                   plots: list, claim_results, paper: pd.DataFrame) -> str:
    L: list[str] = []
    L.append("# DCP-NAS / CP-NAS reproduction report\n")
    profiles = sorted(set(metrics["profile"]), key=C.profile_sort_key)
    kinds = sorted(set(metrics["device_kind"]))
    try:
        paper_disp = os.path.relpath(paper_path, out_dir)
    except ValueError:
        paper_disp = str(paper_path)
    L.append(f"Generated by `harness.report.build_report` from {len(metrics)} `metrics.json` files "
             f"under {_dirs_label(runs_dir)}; paper reference numbers from [`{paper_path.name}`]({paper_disp}) "
             "(only numbers quoted in docs/ALGORITHM.md, each with its source).\n")
    L.append(f"- Profiles: {', '.join(profiles)}; datasets: {', '.join(sorted(set(metrics['dataset'])))}; "
             f"seeds: {', '.join(str(s) for s in sorted(set(metrics['seed'])))}; "
             f"devices: {_devices(metrics)} ({', '.join(kinds)}).")
    smokes = [p for p in profiles if C.is_smoke(p)]
    if smokes:
        who = ("all runs use" if smokes == profiles else
               f"runs with profile {', '.join(f'`{p}`' for p in smokes)} use")
        L.append(f"- **Smoke profile:** {who} synthetic data and tiny budgets; their numbers check "
                 "that the pipeline works and are not comparable with the papers' (the Δ columns say "
                 "'n/a (smoke data)').")
    reduced = [p for p in profiles if C.profile_regime(p) == "reduced"]
    if reduced:
        names = ", ".join(f"`{p}`" for p in reduced)
        L.append(f"- **Reduced budget ({names}):** real images, but a fraction of the data and "
                 "a few dozen search and retraining steps per run instead of the papers' "
                 "schedules. Rankings from these runs hold for this scale only (short retraining "
                 "favours small networks that learn fast); absolute numbers are far below the "
                 "papers' and a shortfall is 'cannot say'.")
    if "cpu" in kinds:
        L.append("- Costs measured on CPU are in CPU-hours and are not comparable with the papers' GPU-days.")
    L.append("")
    L.append("## What was run\n")
    L.append(_md(tables["runs_summary"]) + "\n")
    sections = [("classification", "Classification"),
                ("end_to_end_cost", TABLE_TITLES["end_to_end_cost"]),
                ("search_cost", "Search cost"),
                ("ablation_tangent_lr", "Ablation: tangent constraint × L_R (Table 4.2)"),
                ("ablation_distance", "Ablation: distance D (Table 4.4)"),
                ("detection", "Transfer: object detection"), ("reid", "Transfer: person re-identification"),
                ("deployment", TABLE_TITLES["deployment"])]
    for name, title in sections:
        L.append(f"## {title}\n")
        if name not in tables:
            L.append("_Not produced: no metrics files for this table._\n")
            continue
        L.append(f"CSV: [`{name}.csv`]({name}.csv) · Markdown: [`{name}.md`]({name}.md)\n")
        L.append(_md_with_notes(tables[name], notes.get(name, [])))
    L.append("## Plots\n")
    if plots:
        for p in plots:
            rel = os.path.relpath(p.path, out_dir)
            L.append(f"![{p.title}]({rel})\n")
    else:
        L.append("_No plot had data._\n")
    L.append("## Claims\n")
    L.append("Verdicts: **supports**, **contradicts** or **cannot say** (with why). Rules: smoke-profile "
             "data cannot judge anything quantitative; ranking claims need ≥ 2 seeds per side and a "
             "mean difference larger than the combined seed std √(s₁² + s₂²); absolute accuracies are "
             f"judged only on a non-smoke profile on the paper's dataset, within ±max({C.ABS_TOL_PP:g} pp, "
             "2 seed std) (a shortfall on `real-subset` is 'cannot say'); GPU-day costs are not compared "
             f"with CPU-hours; GPU-day costs up to {C.COST_SUPPORT_FACTOR:g}× the paper's support it, above "
             f"{C.COST_CONTRADICT_FACTOR:g}× contradict it.\n")
    L.append(C.render_claims_markdown(claim_results))
    L.append("## Notes on the reference numbers\n")
    L.extend(f"- {n}" for n in _paper_notes(paper))
    L.append("")
    return "\n".join(L)


#: the stages whose runs make each table's rows
TABLE_STAGES = {"classification": ("train", "search"), "search_cost": ("search",),
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

    from harness import plots as P

    runs_dir, out_dir = _as_dirs(runs_dir), Path(out_dir)
    console = console if console is not None else Console()
    paper_path = Path(paper_numbers) if paper_numbers is not None else default_paper_numbers_path()
    metrics = load_metrics(runs_dir)
    paper = load_paper_numbers(paper_path)

    tables: dict[str, pd.DataFrame] = {}
    notes: dict[str, list[str]] = {}
    tables["runs_summary"] = build_runs_summary(metrics)
    candidates = {
        "classification": (build_classification(metrics, paper), []),
        "end_to_end_cost": (PR.build_end_to_end(metrics),
                            ["Mean per seed of each stage's process-seconds (wall seconds x "
                             "processes) for the method's main runs; transfer is the detection "
                             "and re-ID training of the backbone of the same name."]),
        "search_cost": (build_search_cost(metrics, paper),
                        ["Search cost in the unit measured: CPU-hours on CPU, GPU-days on a GPU; "
                         "only GPU-days on the paper's dataset and a non-smoke profile compare with "
                         "the paper."]),
        "table_4_3": (T43.build_table_43(metrics, paper, T43.load_bench(paper_path.parent)),
                      T43.NOTES),
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
                 f"normal cell; more than {C.COLLAPSE_SKIPS} counts as collapsed.",
                 "Top-1 / top-5: mean ± sample std (ddof=1) over seeds, or the value and n=1, of the "
                 "final epoch. Best-epoch top-1: the best test epoch of the last training step, which "
                 "is what the official DCP-NAS scripts report (it selects on the test set).",
                 "The paper columns show the papers' numbers for the method whatever the dataset; "
                 "Δ = measured − paper only when the dataset matches (cifar10 ↔ CIFAR-10, imagenet ↔ "
                 "ImageNet) and the profile is not smoke.",
                 "OPs = FLOPs + BOPs/64 (M); memory counts 1 bit per binary and 32 per real weight."]
    candidates["classification"] = (candidates["classification"][0], cls_notes)
    for name, (df, n) in candidates.items():
        if df.empty:
            log.info("table %s: no data, not produced", name)
            continue
        tables[name] = df
        notes[name] = [*n, provenance_note(_table_runs(metrics, name))]
    claim_results = C.evaluate_claims(metrics, paper)
    tables["claims"] = C.claims_frame(claim_results)

    # --- write (inputs are valid from here on)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLE_NAMES:
        if name in tables:
            _atomic_write(out_dir / f"{name}.md", _md_with_notes(tables[name], notes.get(name, [])))
            _atomic_write(out_dir / f"{name}.csv", tables[name].to_csv(index=False))
        else:
            for ext in (".md", ".csv"):
                stale = out_dir / f"{name}{ext}"
                if stale.exists():
                    log.info("removing stale %s", stale)
                    stale.unlink()
    index = metrics.copy()
    index["ablation"] = index["ablation"].map(lambda a: json.dumps(a, sort_keys=True) if a else "")
    _atomic_write(out_dir / "metrics_index.csv", index.to_csv(index=False))
    plots = P.make_plots(metrics, paper, out_dir / "plots")
    _atomic_write(out_dir / "REPORT.md",
                  _render_report(runs_dir, out_dir, paper_path, metrics, tables, notes, plots,
                                 claim_results, paper))

    for name in TABLE_NAMES:
        if name in tables and name != "claims":
            _print_table(console, TABLE_TITLES[name], tables[name], notes.get(name, []))
    _print_table(console, TABLE_TITLES["claims"], tables["claims"][["id", "verdict", "why"]], [])
    console.print(f"Report written to {out_dir / 'REPORT.md'} ({len(plots)} plots)", highlight=False)
    return tables
