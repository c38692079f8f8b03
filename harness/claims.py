"""Verdicts on the papers' claims, judged from the harness' metrics files alone.

Every claim of CP-NAS (Zhuo et al., IJCAI 2020) and DCP-NAS (Li et al., IJCV 2023) that
docs/ALGORITHM.md quotes gets one verdict: ``supports``, ``contradicts`` or ``cannot say``,
plus a one-line reason. The reference numbers come from ``results/paper_numbers.csv``
(never from this module). The rules, applied literally:

* Profiles count by name (``profile_regime``): ``smoke``/``smoke-*`` = synthetic data,
  ``paper``/``paper-*`` = the papers' settings, anything else (``real-subset``) = real data
  on a reduced budget.
* ``smoke`` profile (synthetic data) -> "cannot say: synthetic smoke data" for anything
  quantitative.
* Ranking claims (A beats B) need >= 2 seeds on both sides and a mean difference larger
  than the combined seed std ``sqrt(std_A^2 + std_B^2)`` (std with ddof=1); otherwise
  "cannot say: only 1 seed" / "cannot say: difference within seed noise".
* Absolute-accuracy claims on ImageNet / CIFAR-10 are judged only on a non-smoke profile
  on the same dataset, with a tolerance of ``max(ABS_TOL_PP, 2 * seed std)`` percentage
  points. Being above the paper's number supports the claim; being below it beyond the
  tolerance contradicts it only on a ``paper`` profile (``real-subset`` trains on less
  data / fewer epochs, so a shortfall there is "cannot say").
* Cost claims in GPU-days cannot be compared with costs measured on CPU (CPU-hours).
  Relative search-speed claims are judged only on a ``paper`` profile: smaller profiles
  cut each search to a few steps, so their search times say nothing about the schedules.
* Missing runs -> "cannot say: not run".

This module also holds the small helpers shared with ``harness.report`` and
``harness.plots`` (seed statistics, formatting, ablation-cell selection) so that the
tables, the plots and the verdicts use exactly the same numbers. It does not import torch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

SUPPORTS = "supports"
CONTRADICTS = "contradicts"
CANNOT_SAY = "cannot say"
VERDICTS = (SUPPORTS, CONTRADICTS, CANNOT_SAY)

#: harness dataset id -> dataset name used in results/paper_numbers.csv. Only these exact
#: pairs are treated as "the same dataset" when comparing with a paper's number.
DATASET_LABELS = {"cifar10": "CIFAR-10", "imagenet": "ImageNet"}

#: strength of the evidence of each regime (higher is better); see profile_regime
REGIME_RANK = {"paper": 2, "reduced": 1, "smoke": 0}

METHOD_LABELS = {
    "dcpnas": "DCP-NAS",
    "cpnas": "CP-NAS",
    "direct_bnas": "direct BNAS",
    "darts": "DARTS (1st order)",
    "darts_2nd": "DARTS (2nd order)",
    "pcdarts": "PC-DARTS",
    "random": "random search",
    "bnas": "BNAS (Chen et al.)",
    "bats": "BATS",
    "bireal_resnet18": "Bi-Real ResNet-18 (reference)",
    "dcpnas_l": "DCP-NAS-L (published cell)",
    "pcdarts_cifar": "PC-DARTS CIFAR cell (published)",
    "pcdarts_imagenet": "PC-DARTS ImageNet cell (published)",
    "darts_v2": "DARTS-V2 cell (published)",
}
#: published cells retrained by the harness, and the paper model they stand for
PUBLISHED_AS = {"dcpnas_l": ("dcpnas", "L")}
#: display / sort order of methods
METHOD_ORDER = ("dcpnas", "cpnas", "direct_bnas", "darts", "darts_2nd", "pcdarts", "random",
                "bnas", "bats")
#: methods DCP-NAS is claimed to beat besides CP-NAS
BASELINES = ("direct_bnas", "darts", "darts_2nd", "pcdarts", "random", "bnas", "bats")
#: searchers CP-NAS is claimed to be faster than ("prior arts")
PRIOR_ART_SEARCHERS = ("darts", "darts_2nd", "pcdarts", "direct_bnas", "bnas")

# `setting` values of results/paper_numbers.csv
SETTING_MAIN = "main"
SETTING_L_FULL = "DCP-NAS-L; tangent on, L_R on"
SETTING_L_NONE = "DCP-NAS-L; tangent off, L_R off"
SETTING_L_ONE = "DCP-NAS-L; one of tangent/L_R"
SETTING_S_FNORM = "DCP-NAS-S; distance F-norm"
SETTING_S_L1 = "DCP-NAS-S; distance L1"
SETTING_S_COS = "DCP-NAS-S; distance cosine"
#: settings that are a method's headline result (the others are ablation cells)
HEADLINE_SETTINGS = (SETTING_MAIN, SETTING_L_FULL, SETTING_S_FNORM)
#: Table 4.3's rows (the comparison of search strategies, and DCP-NAS-L's four component rows)
TABLE_43 = "4.3"
EXACT_SECOND_ORDER = "exact second order"
#: the GGN claim: supported when the measured exact / GGN search-time ratio is at least this
#: fraction of the paper's (27.9 / 2.9), contradicted below half of this fraction
GGN_RATIO_SUPPORT = 0.5

DISTANCES = ("fnorm", "l1", "cosine")
DISTANCE_LABELS = {"fnorm": "F-norm", "l1": "L1", "cosine": "cosine"}
DISTANCE_SETTINGS = {"fnorm": SETTING_S_FNORM, "l1": SETTING_S_L1, "cosine": SETTING_S_COS}
#: Table 4.2 cells in the book's order: (tangent constraint, L_R)
TANGENT_LR_CELLS = ((False, False), (True, False), (False, True), (True, True))
TANGENT_LR_LABELS = {(False, False): "neither", (True, False): "tangent only",
                     (False, True): "L_R only", (True, True): "tangent + L_R"}

#: absolute-accuracy tolerance in percentage points (widened to 2 seed std when larger)
ABS_TOL_PP = 1.0
#: memory claim tolerance (relative)
MEMORY_REL_TOL = 0.10
#: a GPU-days claim is supported up to this factor of the paper's cost, contradicted above
#: COST_CONTRADICT_FACTOR (different GPU models make anything closer undecidable)
COST_SUPPORT_FACTOR = 1.5
COST_CONTRADICT_FACTOR = 2.0

MAIN_RUN_NOTE = "main DCP-NAS run (ablation null)"
ABLATION_RUN_NOTE = "ablation runs"
NOT_RUN_NOTE = "not run"


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Stats:
    """Mean and sample std (ddof=1) over seeds; std is NaN for n < 2."""

    mean: float
    std: float
    n: int


def seed_stats(values: Iterable) -> Stats:
    vals = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isnan(f):
            continue
        vals.append(f)
    if not vals:
        return Stats(math.nan, math.nan, 0)
    if len(vals) == 1:
        return Stats(vals[0], math.nan, 1)
    return Stats(statistics.mean(vals), statistics.stdev(vals), len(vals))


def fmt_stats(s: Stats, spec: str = ".2f") -> str:
    """'mean ± std' (n >= 2), 'value (n=1)', or '—' when there is no value."""
    if s.n == 0:
        return "—"
    if s.n == 1:
        return f"{format(s.mean, spec)} (n=1)"
    return f"{format(s.mean, spec)} ± {format(s.std, spec)}"


def fmt_num(v: float) -> str:
    """A paper number as written (95.27, 64.3, 0.1)."""
    return f"{round(float(v), 6):g}"


def paper_text(row) -> str:
    """A paper row's value as written in results/paper_numbers.csv (63.0 stays 63.0)."""
    t = row.get("value_text", "") if hasattr(row, "get") else ""
    return t if isinstance(t, str) and t else fmt_num(row["value"])


def paper_top1_text(row) -> str:
    return fmt_num(paper_top1(row)) if row["metric"] == "top1_error" else paper_text(row)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def method_sort_key(method: str) -> tuple:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def profile_regime(profile: str) -> str:
    """What a profile's runs can speak for, from its name: ``smoke`` (synthetic data: nothing
    quantitative) for ``smoke`` / ``smoke-*``; ``paper`` (the papers' settings) for ``paper`` /
    ``paper-*`` (e.g. ``paper-imagenet``); ``reduced`` (real data, reduced budget) for
    ``real-subset`` and any other profile."""
    if profile == "smoke" or profile.startswith("smoke-"):
        return "smoke"
    if profile == "paper" or profile.startswith("paper-"):
        return "paper"
    return "reduced"


def profile_rank(profile: str) -> int:
    return REGIME_RANK[profile_regime(profile)]


def is_smoke(profile: str) -> bool:
    return profile_regime(profile) == "smoke"


def is_paper_scale(profile: str) -> bool:
    return profile_regime(profile) == "paper"


def profile_sort_key(profile: str) -> tuple:
    return (-profile_rank(profile), profile)


def dataset_label(dataset: str) -> str | None:
    return DATASET_LABELS.get(dataset)


def compare_greater(a: Stats, b: Stats, label_a: str, label_b: str,
                    spec: str = ".2f") -> tuple[str, str, str]:
    """Is A's mean larger than B's by more than the combined seed std?

    Returns (verdict, reason, detail)."""
    detail = f"{label_a} {fmt_stats(a, spec)} vs {label_b} {fmt_stats(b, spec)}"
    if a.n == 0 or b.n == 0:
        return CANNOT_SAY, "not run", detail
    if a.n < 2 or b.n < 2:
        return CANNOT_SAY, "only 1 seed", detail
    diff = a.mean - b.mean
    comb = math.hypot(a.std, b.std)
    detail += f", difference {format(diff, '+' + spec)} vs combined std {format(comb, spec)}"
    if diff > comb:
        return SUPPORTS, "difference larger than the combined seed std", detail
    if diff < -comb:
        return CONTRADICTS, "reverse difference larger than the combined seed std", detail
    return CANNOT_SAY, "difference within seed noise", detail


def all_of(results: Sequence[tuple[str, str, str]]) -> tuple[str, str, str]:
    """Combine sub-comparisons that must all hold."""
    if not results:
        return CANNOT_SAY, "not run", ""
    detail = "; ".join(r[2] for r in results if r[2])
    contra = [r for r in results if r[0] == CONTRADICTS]
    if contra:
        return CONTRADICTS, contra[0][1], detail
    if all(r[0] == SUPPORTS for r in results):
        return SUPPORTS, results[0][1], detail
    undecided = [r for r in results if r[0] == CANNOT_SAY]
    order = ("synthetic smoke data", "only 1 seed", "difference within seed noise")
    for reason in order:
        for r in undecided:
            if r[1].startswith(reason):
                return CANNOT_SAY, r[1], detail
    return CANNOT_SAY, undecided[0][1], detail


# ------------------------------------------------------------------ ablation cell selection
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


# ------------------------------------------------------------------------ paper numbers
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


# ------------------------------------------------------------------------------ claims
@dataclass
class ClaimResult:
    id: str
    claim: str
    source: str
    verdict: str
    why: str

    def as_dict(self) -> dict:
        return {"id": self.id, "claim": self.claim, "verdict": self.verdict, "why": self.why,
                "source": self.source}


@dataclass
class _Group:
    label: str
    rank: int
    verdict: str
    reason: str
    detail: str


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def _aggregate(groups: list[_Group], not_run_detail: str = "") -> tuple[str, str]:
    """Combine the verdicts of several (dataset, profile) groups into one."""
    if not groups:
        return CANNOT_SAY, _one_line("not run" + (f" ({not_run_detail})" if not_run_detail else ""))
    groups = sorted(groups, key=lambda g: (-g.rank, g.label))
    decisive = [g for g in groups if g.verdict != CANNOT_SAY]

    def details(gs):
        return "; ".join(f"[{g.label}] {g.detail}" for g in gs if g.detail)

    if decisive:
        kinds = {g.verdict for g in decisive}
        if len(kinds) == 1:
            return decisive[0].verdict, _one_line(f"{decisive[0].reason} ({details(decisive)})")
        return CANNOT_SAY, _one_line(
            "mixed evidence: "
            + ", ".join(f"{g.verdict} on {g.label}" for g in decisive)
            + f" ({details(decisive)})")
    best = groups[0]
    return CANNOT_SAY, _one_line(f"{best.reason} ({details(groups)})" if details(groups)
                                 else best.reason)


def _train_groups(train_main: pd.DataFrame):
    if train_main.empty:
        return []
    return sorted(train_main.groupby(["dataset", "profile"]),
                  key=lambda kv: (profile_sort_key(kv[0][1]), kv[0][0]))


def _stats_of(g: pd.DataFrame, method: str, col: str = "top1") -> Stats:
    return seed_stats(g.loc[g["method"] == method, col].tolist())


def _comparison_group(label: str, profile: str, comps: list[tuple[str, str, str]]) -> _Group:
    """One group of a claim made of comparisons that must all hold; smoke data judges none."""
    if is_smoke(profile):
        return _Group(label, profile_rank(profile), CANNOT_SAY, "synthetic smoke data",
                      "; ".join(c[2] for c in comps))
    return _Group(label, profile_rank(profile), *all_of(comps))


def _ranking_claim(train_main: pd.DataFrame, a: str, opponents: Sequence[str]) -> tuple[str, str]:
    groups = []
    for (dataset, profile), g in _train_groups(train_main):
        present = [m for m in sorted(set(g["method"]), key=method_sort_key) if m in opponents]
        sa = _stats_of(g, a)
        if sa.n == 0 or not present:
            continue
        comps = [compare_greater(sa, _stats_of(g, m), method_label(a), method_label(m))
                 for m in present]
        groups.append(_comparison_group(f"{dataset}/{profile}", profile, comps))
    return _aggregate(groups, f"needs train runs of {method_label(a)} and of "
                              f"{' / '.join(method_label(m) for m in opponents)} on the same "
                              "dataset and profile")


def _judge_absolute(s: Stats, paper_value: float, profile: str, what: str,
                    paper_txt: str | None = None) -> tuple[str, str, str]:
    if s.n == 0:
        return CANNOT_SAY, "not run", ""
    d = s.mean - paper_value
    tol = max(ABS_TOL_PP, 2 * s.std) if s.n >= 2 else ABS_TOL_PP
    detail = (f"{what} measured {fmt_stats(s)} vs paper {paper_txt or fmt_num(paper_value)} "
              f"(Δ {d:+.2f} pp, tolerance ±{tol:.2f} pp)")
    if is_smoke(profile):
        return CANNOT_SAY, "synthetic smoke data", detail
    if abs(d) <= tol:
        return SUPPORTS, "measured within tolerance of the paper's number", detail
    if d > tol:
        return SUPPORTS, "measured above the paper's number", detail
    if is_paper_scale(profile):
        return CONTRADICTS, "measured below the paper's number beyond tolerance", detail
    return (CANNOT_SAY, f"below the paper's number, but the {profile} profile trains on "
                        "reduced data/epochs", detail)


def _size_of(setting: str) -> str | None:
    if setting.startswith("DCP-NAS-L"):
        return "L"
    if setting.startswith("DCP-NAS-S"):
        return "S"
    return None


def _filter_size(runs: pd.DataFrame, size: str | None) -> pd.DataFrame:
    if size is None or runs.empty or "size" not in runs:
        return runs
    tag = runs["size"]
    keep = tag.map(lambda v: not isinstance(v, str) or v == size)
    return runs[keep]


def _untagged(runs: pd.DataFrame) -> bool:
    return "size" not in runs or runs["size"].map(lambda v: not isinstance(v, str)).any()


def _runs_on(df: pd.DataFrame, method: str, paper_dataset: str) -> pd.DataFrame:
    if df.empty:
        return df
    return df[(df["method"] == method) & (df["dataset"].map(dataset_label) == paper_dataset)]


def _where_else(df: pd.DataFrame, method: str) -> str:
    if df.empty:
        return ""
    other = df[df["method"] == method]
    if other.empty:
        return ""
    pairs = sorted({f"{d}/{p}" for d, p in zip(other["dataset"], other["profile"])})
    return f"; {method} runs exist on {', '.join(pairs)}"


def _absolute_claims(paper: pd.DataFrame, train_main: pd.DataFrame) -> list[ClaimResult]:
    out = []
    heads = paper_rows(paper, metric=("top1", "top1_error"), settings=HEADLINE_SETTINGS)
    for i, (_, row) in enumerate(heads.iterrows(), start=1):
        method, pds, setting = row["method"], row["dataset"], row["setting"]
        size = _size_of(setting)
        name = method_label(method) + (f"-{size}" if size and method == "dcpnas" else "")
        p1 = paper_top1(row)
        top5 = paper_rows(paper, method=method, metric="top5", settings=[setting], dataset=pds)
        top5 = top5[top5["paper"] == row["paper"]]
        p5 = float(top5.iloc[0]["value"]) if not top5.empty else None
        p1t, p5t = paper_top1_text(row), (paper_text(top5.iloc[0]) if p5 is not None else None)
        if row["metric"] == "top1_error":
            text = (f"{row['paper']}: {name} top-1 error {paper_text(row)}% on {pds} "
                    f"(= {p1t}% top-1)")
        else:
            text = f"{row['paper']}: {name} reaches {p1t}% top-1"
            if p5 is not None:
                text += f" / {p5t}% top-5"
            text += f" on {pds}"
            if setting != SETTING_MAIN:
                text += f" ({setting})"
        runs = _filter_size(_runs_on(train_main, method, pds), size)
        for pub, (as_method, as_size) in PUBLISHED_AS.items():
            if (method, size) == (as_method, as_size):   # the published cell, retrained
                runs = pd.concat([runs, _runs_on(train_main, pub, pds)])
        groups = []
        for (dataset, profile), g in _train_groups(runs):
            comps = [_judge_absolute(seed_stats(g["top1"]), p1, profile, "top-1", p1t)]
            if p5 is not None:
                comps.append(_judge_absolute(seed_stats(g["top5"]), p5, profile, "top-5", p5t))
            v, r, d = all_of(comps)
            if v == CONTRADICTS and size and _untagged(g):
                v, r = CANNOT_SAY, (f"run not tagged as DCP-NAS-{size} (optional train key "
                                    "'size'), so missing its number says nothing")
            groups.append(_Group(f"{dataset}/{profile}", profile_rank(profile), v, r, d))
        v, why = _aggregate(groups, f"no {method} train run on {pds}"
                                    + _where_else(train_main, method))
        out.append(ClaimResult(f"A{i}", text, str(row["source"]), v, why))
    return out


def _memory_claims(paper: pd.DataFrame, train_main: pd.DataFrame) -> list[ClaimResult]:
    out = []
    rows = paper_rows(paper, metric="memory", settings=HEADLINE_SETTINGS)
    for i, (_, row) in enumerate(rows.iterrows(), start=1):
        method, pds, setting = row["method"], row["dataset"], row["setting"]
        size = _size_of(setting)
        name = method_label(method) + (f"-{size}" if size else "")
        text = f"{row['paper']}: {name} needs {paper_text(row)} {row['unit']} of memory on {pds}"
        runs = _filter_size(_runs_on(train_main, method, pds), size)
        groups = []
        for (dataset, profile), g in _train_groups(runs):
            s = seed_stats(g["memory_mbit"])
            target = float(row["value"])
            rel = (s.mean - target) / target
            detail = f"measured {fmt_stats(s)} Mbit vs paper {paper_text(row)} Mbit ({rel:+.0%})"
            if is_smoke(profile):
                v, r = CANNOT_SAY, "synthetic smoke data"
            elif abs(rel) <= MEMORY_REL_TOL:
                v, r = SUPPORTS, f"within {MEMORY_REL_TOL:.0%} of the paper's number"
            elif size and _untagged(g):
                v, r = CANNOT_SAY, (f"run not tagged as DCP-NAS-{size} (optional train key "
                                    "'size'); its model size may differ")
            else:
                v, r = CONTRADICTS, f"differs from the paper's number by more than {MEMORY_REL_TOL:.0%}"
            groups.append(_Group(f"{dataset}/{profile}", profile_rank(profile), v, r, detail))
        v, why = _aggregate(groups, f"no {method} train run on {pds}" + _where_else(train_main, method))
        out.append(ClaimResult(f"M{i}", text, str(row["source"]), v, why))
    return out


def _search_groups(search_main: pd.DataFrame):
    if search_main.empty:
        return []
    return sorted(search_main.groupby(["dataset", "profile", "search_cost_unit"]),
                  key=lambda kv: (profile_sort_key(kv[0][1]), kv[0][0], kv[0][2]))


def _search_cost_claims(paper: pd.DataFrame, search_main: pd.DataFrame) -> list[ClaimResult]:
    out = []
    rows = paper_rows(paper, metric="search_cost", settings=HEADLINE_SETTINGS)
    for i, (_, row) in enumerate(rows.iterrows(), start=1):
        method, pds = row["method"], row["dataset"]
        target, unit = float(row["value"]), str(row["unit"])
        size = _size_of(row["setting"])
        name = method_label(method) + (f"-{size}" if size else "")
        text = f"{row['paper']}: {name} search costs {paper_text(row)} {unit} on {pds}"
        groups = []
        if unit != "GPU-days":
            runs = search_main[search_main["method"] == method] if not search_main.empty else search_main
            for (dataset, profile, munit), g in _search_groups(runs):
                s = seed_stats(g["search_cost_value"])
                groups.append(_Group(f"{dataset}/{profile}", profile_rank(profile), CANNOT_SAY,
                                     f"the paper's unit ('{unit}') is not given in ALGORITHM.md",
                                     f"measured {fmt_stats(s, '.3g')} {munit}"))
            v, why = _aggregate(groups, f"no {method} search run; and the paper's unit is not given")
            if not groups:
                why = _one_line(f"not run (no {method} search run); the paper's unit is also "
                                "not given in ALGORITHM.md")
            out.append(ClaimResult(f"S{i}", text, str(row["source"]), v, why))
            continue
        runs = _runs_on(search_main, method, pds)
        for (dataset, profile, munit), g in _search_groups(runs):
            s = seed_stats(g["search_cost_value"])
            detail = f"measured {fmt_stats(s, '.3g')} {munit} vs paper {paper_text(row)} {unit}"
            label = f"{dataset}/{profile}"
            rank = profile_rank(profile)
            if is_smoke(profile):
                v, r = CANNOT_SAY, "synthetic smoke data"
            elif munit != "GPU-days":
                v, r = CANNOT_SAY, f"measured on CPU ({munit}); CPU time cannot be compared with GPU-days"
            elif not is_paper_scale(profile):
                if s.mean > COST_CONTRADICT_FACTOR * target:
                    v, r = CONTRADICTS, (f"already more than {COST_CONTRADICT_FACTOR:g}x the claim on "
                                         f"the reduced {profile} search budget")
                else:
                    v, r = CANNOT_SAY, f"reduced search budget ({profile} profile)"
            elif s.mean <= COST_SUPPORT_FACTOR * target:
                v, r = SUPPORTS, f"at most {COST_SUPPORT_FACTOR:g}x the claimed cost"
            elif s.mean > COST_CONTRADICT_FACTOR * target:
                v, r = CONTRADICTS, f"more than {COST_CONTRADICT_FACTOR:g}x the claimed cost"
            else:
                v, r = CANNOT_SAY, ("between 1.5x and 2x the claimed cost; the GPU model "
                                    "differs from the paper's")
            groups.append(_Group(label, rank, v, r, detail))
        v, why = _aggregate(groups, f"no {method} search run on {pds}"
                                    + _where_else(search_main, method))
        out.append(ClaimResult(f"S{i}", text, str(row["source"]), v, why))
    return out


def _speedup_claims(paper: pd.DataFrame, search_main: pd.DataFrame, start: int) -> list[ClaimResult]:
    out = []
    rows = paper_rows(paper, metric="search_speedup_vs_prior_art")
    for i, (_, row) in enumerate(rows.iterrows(), start=start):
        method = row["method"]
        frac = float(row["value"]) / 100.0
        text = (f"{row['paper']}: {method_label(method)} searches {paper_text(row)}% faster "
                f"than prior arts ({', '.join(method_label(m) for m in PRIOR_ART_SEARCHERS)}; "
                "same dataset, profile and device kind)")
        groups = []
        if not search_main.empty:
            for (dataset, profile, kind), g in sorted(
                    search_main.groupby(["dataset", "profile", "device_kind"]),
                    key=lambda kv: (profile_sort_key(kv[0][1]), kv[0][0], kv[0][2])):
                sa = seed_stats(g.loc[g["method"] == method, "search_seconds"])
                present = [m for m in sorted(set(g["method"]), key=method_sort_key)
                           if m in PRIOR_ART_SEARCHERS]
                if sa.n == 0 or not present:
                    continue
                comps = []
                for m in present:
                    sb = seed_stats(g.loc[g["method"] == m, "search_seconds"])
                    # claim: t_method <= (1 - frac) * t_prior, i.e. (1-frac)*t_prior - t_method > 0
                    scaled = Stats(sb.mean * (1 - frac), sb.std * (1 - frac), sb.n)
                    comps.append(compare_greater(scaled, sa, f"{1 - frac:g} x {method_label(m)} s",
                                                 f"{method_label(method)} s", ".1f"))
                label = f"{dataset}/{profile}/{kind}"
                if profile_regime(profile) == "reduced":
                    groups.append(_Group(
                        label, profile_rank(profile), CANNOT_SAY,
                        f"reduced search budgets ({profile} profile): the searches do not run "
                        "the papers' schedules, so their wall times do not compare",
                        "; ".join(c[2] for c in comps)))
                    continue
                groups.append(_comparison_group(label, profile, comps))
        v, why = _aggregate(groups, f"needs search runs of {method} and a prior-art searcher on the "
                                    "same dataset/profile/device kind")
        out.append(ClaimResult(f"S{i}", text, str(row["source"]), v, why))
    return out


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


#: the GGN products of the published method (the sampled Fisher estimate, ``ggn``, is an
#: ablation of ours and not compared in the GGN claim)
GGN_PRODUCTS = ("ggn_exact",)


def _ggn_claim(paper: pd.DataFrame, search: pd.DataFrame, train: pd.DataFrame) -> ClaimResult:
    """Table 4.3: the GGN approximation cuts DCP-NAS's search cost ~10x (27.9 -> 2.9) for
    ~0.2 pp of top-1. Judged from two DCP-NAS searches on the same dataset and profile, one
    with second_order ggn and one with exact (the main run and the Table 4.3 ablation, in
    either role): the measured exact / GGN search-time ratio against the paper's, and the
    retrained top-1 of both."""
    rows = paper_rows(paper, method="dcpnas", metric="search_cost")
    rows = rows[rows["table"] == TABLE_43]
    exact_p = rows[rows["setting"].str.contains(EXACT_SECOND_ORDER, regex=False)]["value"]
    ggn_p = rows[~rows["setting"].str.contains(EXACT_SECOND_ORDER, regex=False)]["value"]
    text = "DCP-NAS: the GGN approximation cuts search cost ~10x for ~0.2 pp of top-1"
    source = "Li et al., DCP-NAS, IJCV 2023, Table 4.3 (reading of its rows inferred)"
    if exact_p.empty or ggn_p.empty:
        return ClaimResult("G1", text, source, CANNOT_SAY, "no Table 4.3 rows in paper_numbers.csv")
    ratio_p = float(exact_p.mean()) / float(ggn_p.mean())
    text = (f"DCP-NAS: the GGN approximation cuts search cost {ratio_p:.1f}x "
            f"({fmt_num(float(exact_p.mean()))} -> {fmt_num(float(ggn_p.mean()))}) for ~0.2 pp "
            "of top-1 (DCP-NAS-L rows of Table 4.3)")

    def candidates(df: pd.DataFrame) -> pd.DataFrame:
        if df.empty:
            return df
        return df[(df["method"] == "dcpnas")
                  & ((df["ablation_key"] == "") | (df["abl_table"] == TABLE_43))]

    s = candidates(search)
    groups = []
    if not s.empty:
        s = s.assign(so=[second_order_of(r) for _, r in s.iterrows()],
                     dec=[decoupled_of(r) for _, r in s.iterrows()])
        s = s[s["dec"]]                  # Table 4.3's rows 3 and 4: decoupled optimization on
        t = candidates(train)
        for (dataset, profile), g in s.groupby(["dataset", "profile"]):
            g_ggn, g_ex = g[g["so"].isin(GGN_PRODUCTS)], g[g["so"] == "exact"]
            if g_ggn.empty or g_ex.empty:
                continue
            te, tg = seed_stats(g_ex["search_seconds"]), seed_stats(g_ggn["search_seconds"])
            ratio = te.mean / tg.mean if tg.mean > 0 else math.nan
            detail = (f"search time exact {fmt_stats(te, '.1f')} s vs GGN {fmt_stats(tg, '.1f')} "
                      f"s: {ratio:.2f}x (paper {ratio_p:.1f}x)")
            tg_rows = t[(t["dataset"] == dataset) & (t["profile"] == profile)] if not t.empty \
                else t

            def top1(keys) -> Stats:
                if tg_rows.empty:
                    return Stats(math.nan, math.nan, 0)
                return seed_stats(tg_rows[tg_rows["ablation_key"].isin(set(keys))]["top1"])
            a_ggn, a_ex = top1(g_ggn["ablation_key"]), top1(g_ex["ablation_key"])
            if a_ggn.n and a_ex.n:
                detail += f"; top-1 GGN {fmt_stats(a_ggn)} vs exact {fmt_stats(a_ex)}"
            label = f"{dataset}/{profile}"
            if is_smoke(profile):
                v, r = CANNOT_SAY, "synthetic smoke data"
            elif not is_paper_scale(profile):
                v, r = CANNOT_SAY, (f"reduced {profile} budget: the per-step cost ratio is "
                                    "measured, the papers' schedules are not run")
            elif ratio < GGN_RATIO_SUPPORT * ratio_p / 2:
                v, r = CONTRADICTS, f"exact / GGN search time far below the paper's {ratio_p:.1f}x"
            elif a_ggn.n == 0 or a_ex.n == 0:
                v, r = CANNOT_SAY, "the exact and GGN genotypes were not both retrained"
            else:
                drop = a_ex.mean - a_ggn.mean
                tol = (max(ABS_TOL_PP, 2 * math.hypot(a_ex.std, a_ggn.std))
                       if min(a_ex.n, a_ggn.n) > 1 else ABS_TOL_PP)
                if drop > tol:
                    v, r = CONTRADICTS, f"GGN loses {drop:.2f} pp of top-1 (tolerance {tol:.2f})"
                elif ratio >= GGN_RATIO_SUPPORT * ratio_p:
                    v, r = SUPPORTS, "search cost cut and top-1 kept within tolerance"
                else:
                    v, r = CANNOT_SAY, (f"a {ratio:.1f}x cut: between {GGN_RATIO_SUPPORT / 2:g} "
                                        f"and {GGN_RATIO_SUPPORT:g} of the paper's ratio")
            groups.append(_Group(label, profile_rank(profile), v, r, detail))
    v, why = _aggregate(groups, "needs two decoupled DCP-NAS searches on the same "
                                "dataset/profile, one with the GGN product and one with the "
                                "exact Hessian (the main run and the ablation dcpnas-exact)")
    return ClaimResult("G1", text, source, v, why)


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


def _collapse_claim(search_main: pd.DataFrame) -> ClaimResult:
    """Whether the searched normal cells collapse to skip-connects (more than COLLAPSE_SKIPS),
    per method over its searches; judged for DCP-NAS, whose cells the paper retrains as good
    1-bit architectures."""
    text = (f"DCP-NAS's searched normal cells do not collapse to skip-connects (at most "
            f"{COLLAPSE_SKIPS}; the failure DARTS is known for)")
    source = "Li et al., DCP-NAS, IJCV 2023 (its cells are retrained as 1-bit backbones)"
    groups = []
    for (dataset, profile), g in search_main.groupby(["dataset", "profile"]):
        per_method = []
        verdict_dcp = None
        for method, gm in sorted(g.groupby("method"), key=lambda kv: method_sort_key(kv[0])):
            counts = skip_counts(gm)
            if not counts:
                continue
            bad = collapsed(counts)
            per_method.append(f"{method_label(method)} {bad}/{len(counts)}")
            if method == "dcpnas":
                verdict_dcp = (bad, len(counts))
        if verdict_dcp is None:
            continue
        detail = "collapsed searches: " + ", ".join(per_method)
        bad, n = verdict_dcp
        if is_smoke(profile):
            v, r = CANNOT_SAY, "synthetic smoke data"
        elif bad == 0:
            v, r = SUPPORTS, f"no DCP-NAS cell collapsed ({n} searches)"
        elif 2 * bad > n:
            v, r = CONTRADICTS, f"{bad} of {n} DCP-NAS cells collapsed"
        else:
            v, r = CANNOT_SAY, f"{bad} of {n} DCP-NAS cells collapsed"
        groups.append(_Group(f"{dataset}/{profile}", profile_rank(profile), v, r, detail))
    v, why = _aggregate(groups, "needs DCP-NAS search records with their cell summary")
    return ClaimResult("K1", text, source, v, why)


def _ablation_group(dataset: str, profile: str, comps: list[tuple[str, str, str]],
                    missing: list[str]) -> _Group:
    """One (dataset, profile) group of an ablation claim: every comparison must hold."""
    label = f"{dataset}/{profile}"
    if any(c[1] == "not run" for c in comps):
        return _Group(label, profile_rank(profile), CANNOT_SAY, "not run",
                      f"missing cells: {', '.join(missing)}")
    return _comparison_group(label, profile, comps)


def _ablation_claims(train: pd.DataFrame, paper: pd.DataFrame) -> list[ClaimResult]:
    out = []
    t42 = paper_rows(paper, method="dcpnas", metric="top1",
                     settings=[SETTING_L_FULL, SETTING_L_NONE, SETTING_L_ONE])
    src42 = str(t42.iloc[0]["source"]).split(";")[0] if not t42.empty else "DCP-NAS Table 4.2"
    def texts(setting):
        return [paper_text(r) for _, r in t42[t42["setting"] == setting].iterrows()]

    none_v, one_v, full_v = texts(SETTING_L_NONE), texts(SETTING_L_ONE), texts(SETTING_L_FULL)
    paper_txt = ""
    if none_v and one_v and full_v:
        paper_txt = (f" (paper, {t42.iloc[0]['dataset']}: neither {none_v[0]}, single components "
                     f"{' / '.join(one_v)} (which is which: ambiguous), both {full_v[0]})")

    cells_by_group = tangent_lr_cells(train)
    specs = [
        ("T1", "the tangent constraint alone improves top-1 over neither component",
         [((True, False), (False, False))]),
        ("T2", "the reconstruction loss L_R alone improves top-1 over neither component",
         [((False, True), (False, False))]),
        ("T3", "tangent constraint + L_R together give the best top-1 (beat each alone)",
         [((True, True), (True, False)), ((True, True), (False, True))]),
    ]
    for cid, what, pairs in specs:
        groups = []
        for (dataset, profile), cells in cells_by_group.items():
            comps = []
            for hi, lo in pairs:
                comps.append(compare_greater(cells[hi].stats("top1"), cells[lo].stats("top1"),
                                             TANGENT_LR_LABELS[hi], TANGENT_LR_LABELS[lo]))
            missing = sorted({TANGENT_LR_LABELS[c] for p in pairs for c in p
                              if cells[c].source == NOT_RUN_NOTE})
            groups.append(_ablation_group(dataset, profile, comps, missing))
        v, why = _aggregate(groups, "no Table 4.2 ablation train runs")
        out.append(ClaimResult(cid, f"DCP-NAS Table 4.2: {what}{paper_txt}", src42, v, why))

    t44 = paper_rows(paper, method="dcpnas", metric="top1", settings=list(DISTANCE_SETTINGS.values()))
    src44 = str(t44.iloc[0]["source"]).split(";")[0] if not t44.empty else "DCP-NAS Table 4.4"
    vals = {d: [paper_text(r) for _, r in t44[t44["setting"] == s].iterrows()]
            for d, s in DISTANCE_SETTINGS.items()}
    p44 = ""
    if all(vals.values()):
        p44 = f" (paper, {t44.iloc[0]['dataset']}: " + ", ".join(
            f"{DISTANCE_LABELS[d]} {vals[d][0]}" for d in DISTANCES) + ")"
    groups = []
    for (dataset, profile), cells in distance_cells(train).items():
        comps = [compare_greater(cells["fnorm"].stats("top1"), cells[d].stats("top1"),
                                 "F-norm", DISTANCE_LABELS[d]) for d in ("l1", "cosine")]
        missing = [DISTANCE_LABELS[d] for d in DISTANCES if cells[d].source == NOT_RUN_NOTE]
        groups.append(_ablation_group(dataset, profile, comps, missing))
    v, why = _aggregate(groups, "no Table 4.4 ablation train runs")
    out.append(ClaimResult("D1", f"DCP-NAS Table 4.4: the F-norm distance gives the best top-1 "
                                 f"(beats L1 and cosine){p44}", src44, v, why))
    return out


def _transfer_claim(metrics: pd.DataFrame) -> ClaimResult:
    parts = []
    for stage, col, name in (("detect", "bbox_mAP", "detection bbox mAP"), ("reid", "mAP", "re-ID mAP")):
        d = metrics[metrics["stage"] == stage]
        if d.empty:
            continue
        s = seed_stats(d[col])
        parts.append(f"{name} measured on {', '.join(sorted(set(d['dataset'])))} "
                     f"(mean {s.mean:.2f} over {s.n} run{'s' if s.n != 1 else ''})")
    if parts:
        why = ("ALGORITHM.md gives no reference numbers for detection / re-ID to compare with; "
               + "; ".join(parts))
    else:
        why = "not run (no detect / reid metrics files)"
    return ClaimResult("X1", "DCP-NAS backbones transfer to object detection and person re-ID",
                       "Li et al., DCP-NAS, IJCV 2023 (as summarised in docs/ALGORITHM.md)",
                       CANNOT_SAY, _one_line(why))


def evaluate_claims(metrics: pd.DataFrame, paper: pd.DataFrame) -> list[ClaimResult]:
    """One verdict per claim quoted in docs/ALGORITHM.md.

    ``metrics`` is the frame of ``harness.report.load_metrics``; ``paper`` the frame of
    ``harness.report.load_paper_numbers``."""
    train = metrics[metrics["stage"] == "train"]
    search = metrics[metrics["stage"] == "search"]
    train_main, search_main = main_rows(train), main_rows(search)

    out: list[ClaimResult] = []
    v, why = _ranking_claim(train_main, "dcpnas", ["cpnas"])
    out.append(ClaimResult("R1", "DCP-NAS reaches a higher top-1 than CP-NAS (same dataset and profile)",
                           "Li et al., DCP-NAS, IJCV 2023 (ALGORITHM.md)", v, why))
    v, why = _ranking_claim(train_main, "dcpnas", BASELINES)
    out.append(ClaimResult("R2", "DCP-NAS reaches a higher top-1 than every baseline run "
                                 "(direct BNAS, DARTS, PC-DARTS, random, ...; same dataset and profile)",
                           "Li et al., DCP-NAS, IJCV 2023 (ALGORITHM.md)", v, why))
    out.extend(_ablation_claims(train, paper))
    out.extend(_absolute_claims(paper, train_main))
    out.extend(_memory_claims(paper, train_main))
    sc = _search_cost_claims(paper, search_main)
    out.extend(sc)
    out.extend(_speedup_claims(paper, search_main, start=len(sc) + 1))
    out.append(_ggn_claim(paper, search, train))
    out.append(_collapse_claim(search_main))
    out.append(_transfer_claim(metrics))
    for c in out:
        assert c.verdict in VERDICTS, c
        c.why = _one_line(c.why)
        c.claim = _one_line(c.claim)
    return out


def claims_frame(results: Sequence[ClaimResult]) -> pd.DataFrame:
    return pd.DataFrame([r.as_dict() for r in results],
                        columns=["id", "claim", "verdict", "why", "source"])


def render_claims_markdown(results: Sequence[ClaimResult]) -> str:
    """One line per claim: ``- `ID` claim → **verdict**: why (source: ...)``."""
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    lines = [", ".join(f"{n} {v}" for v, n in counts.items()) + ".", ""]
    for r in results:
        lines.append(f"- `{r.id}` {r.claim} → **{r.verdict}**: {r.why} _(source: {r.source})_")
    return "\n".join(lines) + "\n"
