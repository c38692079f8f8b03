"""Which runs and paper rows a table row or a claim looks at: the ablation cells, the paper
numbers of a method, a DCP-NAS search's settings, skip counts, and the grouping helpers of
the tables.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from harness.report.stats import Stats, fmt_num, seed_stats
from harness.report.vocabulary import (ABLATION_RUN_NOTE, DISTANCES, DISTANCE_SETTINGS,
                                       HEADLINE_SETTINGS, MAIN_RUN_NOTE, NOT_RUN_NOTE,
                                       SETTING_L_FULL, SETTING_L_NONE, SETTING_L_ONE,
                                       SETTING_MAIN, TANGENT_LR_CELLS, dataset_label, is_smoke,
                                       method_sort_key, profile_sort_key)


def paper_text(row) -> str:
    """A paper row's value as written in results/paper_numbers.csv (63.0 stays 63.0)."""
    t = row.get("value_text", "") if hasattr(row, "get") else ""
    return t if isinstance(t, str) and t else fmt_num(row["value"])


def paper_top1_text(row) -> str:
    return fmt_num(paper_top1(row)) if row["metric"] == "top1_error" else paper_text(row)


def main_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of runs without an ablation tag."""
    if df.empty:
        return df
    return df[df["ablation_key"] == ""]


@dataclass
class Cell:
    rows: pd.DataFrame
    source: str  # ABLATION_RUN_NOTE | MAIN_RUN_NOTE | NOT_RUN_NOTE

    def stats(self, col: str) -> Stats:
        if self.rows.empty or col not in self.rows:
            return Stats(math.nan, math.nan, 0)
        return seed_stats(self.rows[col].tolist())


def _is(v, want: bool) -> bool:
    return v is want or (isinstance(v, bool) and v == want)


def tangent_lr_cells(train: pd.DataFrame) -> dict[tuple[str, str], dict[tuple[bool, bool], Cell]]:
    """Table 4.2 cells per (dataset, profile) that has at least one Table 4.2 ablation run.

    The (tangent on, L_R on) cell falls back to the main DCP-NAS run when no ablation run
    of that cell exists."""
    out: dict = {}
    if train.empty:
        return out
    dc = train[train["method"] == "dcpnas"]
    abl = dc[dc["abl_table"] == "4.2"]
    for (dataset, profile), g in sorted(abl.groupby(["dataset", "profile"]),
                                        key=lambda kv: (kv[0][0], profile_sort_key(kv[0][1]))):
        cells = {}
        for tangent, recon in TANGENT_LR_CELLS:
            rows = g[g["abl_tangent"].map(lambda v: _is(v, tangent))
                     & g["abl_recon"].map(lambda v: _is(v, recon))]
            if not rows.empty:
                cells[(tangent, recon)] = Cell(rows, ABLATION_RUN_NOTE)
                continue
            if (tangent, recon) == (True, True):
                m = main_rows(dc)
                m = m[(m["dataset"] == dataset) & (m["profile"] == profile)]
                if not m.empty:
                    cells[(tangent, recon)] = Cell(m, MAIN_RUN_NOTE)
                    continue
            cells[(tangent, recon)] = Cell(rows, NOT_RUN_NOTE)
        out[(dataset, profile)] = cells
    return out


def distance_cells(train: pd.DataFrame) -> dict[tuple[str, str], dict[str, Cell]]:
    """Table 4.4 cells (F-norm / L1 / cosine) per (dataset, profile) with a 4.4 ablation
    run; the F-norm cell falls back to the main DCP-NAS run."""
    out: dict = {}
    if train.empty:
        return out
    dc = train[train["method"] == "dcpnas"]
    abl = dc[dc["abl_table"] == "4.4"]
    for (dataset, profile), g in sorted(abl.groupby(["dataset", "profile"]),
                                        key=lambda kv: (kv[0][0], profile_sort_key(kv[0][1]))):
        cells = {}
        for dist in DISTANCES:
            rows = g[g["abl_distance"] == dist]
            if not rows.empty:
                cells[dist] = Cell(rows, ABLATION_RUN_NOTE)
                continue
            if dist == "fnorm":
                m = main_rows(dc)
                m = m[(m["dataset"] == dataset) & (m["profile"] == profile)]
                if not m.empty:
                    cells[dist] = Cell(m, MAIN_RUN_NOTE)
                    continue
            cells[dist] = Cell(rows, NOT_RUN_NOTE)
        out[(dataset, profile)] = cells
    return out


def paper_rows(paper: pd.DataFrame, method: str | None = None, metric: str | Sequence[str] | None = None,
               settings: Sequence[str] | None = None, dataset: str | None = None) -> pd.DataFrame:
    p = paper
    if method is not None:
        p = p[p["method"] == method]
    if metric is not None:
        p = p[p["metric"].isin([metric] if isinstance(metric, str) else list(metric))]
    if settings is not None:
        p = p[p["setting"].isin(list(settings))]
    if dataset is not None:
        p = p[p["dataset"] == dataset]
    return p


def paper_top1(row) -> float:
    """Top-1 accuracy of a paper row (top1, or 100 - top1_error)."""
    v = float(row["value"])
    return round(100.0 - v, 6) if row["metric"] == "top1_error" else v


def short_source(row) -> str:
    s = str(row["paper"])
    if str(row.get("table", "") or ""):
        s += f" T{row['table']}"
    return s


def search_setting(row, key: str, default):
    """A DCP-NAS search's setting ``key``: its ablation's value, else its recorded config's,
    else ``default`` (for files written before the setting was recorded)."""
    for source in (row.get("ablation"), row.get("config")):
        if isinstance(source, dict) and key in source:
            return source[key]
    return default


def second_order_of(row) -> str:
    """Which second order a DCP-NAS search ran with ('ggn' for searches that recorded none:
    ggn was the default when configs were not yet recorded)."""
    return str(search_setting(row, "second_order", "ggn"))


def decoupled_of(row) -> bool:
    """Whether a DCP-NAS search ran with decoupled optimization (on by default)."""
    return bool(search_setting(row, "decouple", True))


#: a normal cell with more skip-connects than this counts as collapsed (P-DARTS and DARTS+ cap
#: the normal cell at 2 skips for this reason)
COLLAPSE_SKIPS = 2


def _cell(row: pd.Series, key: str) -> float:
    cell = row.get("cell")
    return float(cell[key]) if isinstance(cell, dict) and key in cell else math.nan


def skip_counts(searches: pd.DataFrame) -> list[int]:
    """Skip-connects in the normal cell of each search (runs recorded without it are left out)."""
    out = []
    for _, r in searches.iterrows():
        v = _cell(r, "normal_skip")
        if not math.isnan(v):
            out.append(int(v))
    return out


def collapsed(counts: list[int]) -> int:
    """How many of the normal cells (their skip counts) have more than COLLAPSE_SKIPS."""
    return sum(c > COLLAPSE_SKIPS for c in counts)


def column_stats(df: pd.DataFrame, col: str) -> Stats:
    if df.empty or col not in df:
        return Stats(math.nan, math.nan, 0)
    return seed_stats(df[col].tolist())


def device_list(df: pd.DataFrame) -> str:
    return ", ".join(sorted(set(df["device"]))) if not df.empty else "—"


def stage_rows(metrics: pd.DataFrame, stage: str) -> pd.DataFrame:
    return metrics[metrics["stage"] == stage]


def deployed_ir(engines: dict) -> str:
    """The engine a deploy record's network is deployed as: its binary IR, or the FP32 IR of a
    real-valued network (no binary IR was written)."""
    return "binary_ir" if engines.get("binary_ir") else "fp32_ir"


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


class _PaperEntry:
    def __init__(self, value: float, text: str, dataset: str, label: str, short: str,
                 ambiguous: bool = False):
        self.value, self.text, self.dataset = value, text, dataset
        self.label, self.short, self.ambiguous = label, short, ambiguous


def paper_entries(paper: pd.DataFrame, method: str, settings, metric: str) -> list[_PaperEntry]:
    metrics = ("top1", "top1_error") if metric == "top1" else (metric,)
    rows = paper_rows(paper, method=method, metric=metrics, settings=settings)
    out = []
    for _, r in rows.iterrows():
        v = paper_top1(r) if metric == "top1" else float(r["value"])
        src = short_source(r)
        setting = r["setting"]
        if r["metric"] == "top1_error":
            label, short = f"{src}: 100 − {paper_text(r)} error", "third-party"
        elif setting == SETTING_MAIN:
            label, short = src, str(r["paper"])
        elif setting in HEADLINE_SETTINGS:  # "DCP-NAS-L; ..." -> model name only
            short = setting.split(";")[0]
            label = f"{src}, {short}"
        else:  # an ablation cell: the table row / variant already names the setting
            label, short = src, setting
        ambiguous = setting == SETTING_L_ONE
        if ambiguous:
            label = f"{src}, one of tangent/L_R: ambiguous which"
        text = paper_top1_text(r) if metric == "top1" else paper_text(r)
        out.append(_PaperEntry(v, text, r["dataset"], label, short, ambiguous))
    return out


def paper_cell(entries: list[_PaperEntry]) -> str:
    if not entries:
        return "—"
    amb = [e for e in entries if e.ambiguous]
    parts = [f"{e.text} ({e.dataset}, {e.label})" for e in entries if not e.ambiguous]
    if amb:
        parts.append(" or ".join(e.text for e in amb) + f" ({amb[0].dataset}, {amb[0].label})")
    return "; ".join(parts)


def delta_cell(measured: Stats, entries: list[_PaperEntry], dataset: str, profile: str) -> str:
    """measured − paper, only for the same dataset on a non-smoke profile."""
    if measured.n == 0:
        return "n/a (not run)"
    if not entries:
        return "n/a (no paper number)"
    if is_smoke(profile):
        return "n/a (smoke data)"
    label = dataset_label(dataset)
    match = [e for e in entries if e.dataset == label]
    if not match:
        theirs = ", ".join(sorted({e.dataset for e in entries}))
        return f"n/a (measured on {dataset}, paper on {theirs})"
    many = len(match) > 1
    return "; ".join(f"{measured.mean - e.value:+.2f} vs {e.text}"
                     + (f" ({e.short})" if many else "") for e in match)


def variant_settings(row: pd.Series) -> list[str] | None:
    """Paper settings that correspond to a train run's variant."""
    if row["ablation_key"] == "":
        return list(HEADLINE_SETTINGS)
    if row["abl_table"] == "4.2":
        t, r = bool(row["abl_tangent"]), bool(row["abl_recon"])
        if t and r:
            return [SETTING_L_FULL]
        if not t and not r:
            return [SETTING_L_NONE]
        return [SETTING_L_ONE]
    if row["abl_table"] == "4.4":
        return [DISTANCE_SETTINGS[row["abl_distance"]]]
    return None


def group_sorted(df: pd.DataFrame, keys: list[str]):
    def sk(kv):
        vals = dict(zip(keys, kv[0]))
        return tuple(
            method_sort_key(v) if k == "method" else profile_sort_key(v) if k == "profile"
            else (v != "", v) if k == "ablation_key" else (str(v),)
            for k, v in vals.items())
    return sorted(df.groupby(keys, sort=False, dropna=False), key=sk)
