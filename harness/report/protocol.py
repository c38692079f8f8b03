"""The NAS-reproduction protocol in the report's tables (Yang et al., ICLR 2020; Li and
Talwalkar, UAI 2019; Lindauer and Hutter, JMLR 2020): which protocol a row's numbers follow,
best-of-N apart from the mean, the relative improvement over random architectures, the skip
counts of the found cells (counted in ``selection``, whose collapse claim K1 uses them too),
and the end-to-end cost of a method.

Every function takes the frames of ``harness.report.load_metrics`` (one row per metrics file).
"""
from __future__ import annotations

import math
from pathlib import PurePath

import pandas as pd
from harness.report.selection import collapsed
from harness.report.stats import Stats, fmt_num, fmt_stats, seed_stats


INDEPENDENT = "independent searches, each retrained once"
SAME_SEARCH = "one search retrained several times"
PUBLISHED = "published cell, retrained"
REFERENCE = "hand-designed network, trained"
GIVEN = "given genotype file, retrained"


def run_protocol(row: pd.Series) -> str:
    """Where one train run's network came from (its record's ``genotype``)."""
    g = row.get("genotype")
    if not isinstance(g, str) or not g:
        return REFERENCE
    if g.startswith("published:"):
        return PUBLISHED
    parts = PurePath(g).parts
    if len(parts) >= 4 and parts[-4] == "search" and parts[-2] == f"seed{int(row['seed'])}":
        return INDEPENDENT
    return GIVEN


def row_protocol(runs: pd.DataFrame) -> str:
    """The protocol of a table row: one label, 'N independent searches ...' when every run
    retrained its own search, or 'MIXED: ...' naming what the runs mix (such a row must not be
    read as a mean over independent searches)."""
    kinds = [run_protocol(r) for _, r in runs.iterrows()]
    n = len(runs)
    files = [g for g in runs["genotype"] if isinstance(g, str) and not g.startswith("published:")]
    if len(set(files)) < len(files):
        return f"MIXED: {SAME_SEARCH} ({len(set(files))} genotype file(s) for {len(files)} runs)"
    if set(kinds) == {INDEPENDENT}:
        return f"{n} {INDEPENDENT}"
    if len(set(kinds)) == 1:
        return f"{kinds[0]} {n}x"
    counts = pd.Series(kinds).value_counts()
    return "MIXED: " + ", ".join(f"{k} ({v})" for k, v in counts.items())


def best_of_n(runs: pd.DataFrame, col: str = "top1") -> str:
    """The best run's value, labelled as such: not a mean, and not what one search gives."""
    vals = [float(v) for v in runs[col] if v is not None and not math.isnan(float(v))]
    return f"{max(vals):.2f} (best of {len(vals)})" if vals else "—"


def relative_improvement(runs: pd.DataFrame, random_runs: pd.DataFrame,
                         col: str = "top1") -> Stats:
    """RI = 100 (acc_m - acc_rand) / acc_rand per run of the method (Yang et al.), acc_rand the
    mean over the random-architecture runs of the same dataset and profile; mean ± std over the
    method's runs. NaN when there is no random run."""
    rand = [float(v) for v in random_runs[col]] if not random_runs.empty else []
    if not rand or runs.empty:
        return Stats(math.nan, math.nan, 0)
    base = sum(rand) / len(rand)
    if base <= 0:
        return Stats(math.nan, math.nan, 0)
    return seed_stats([100.0 * (float(v) - base) / base for v in runs[col]])


def fmt_ri(s: Stats) -> str:
    return "—" if s.n == 0 or math.isnan(s.mean) else fmt_stats(s)


def fmt_skips(counts: list[int]) -> str:
    """'2, 3, 5 (1 of 3 collapsed)': per search, and how many collapsed."""
    if not counts:
        return "—"
    return f"{', '.join(map(str, counts))} ({collapsed(counts)} of {len(counts)} collapsed)"


def _world(row: pd.Series) -> int:
    w = row.get("world_size")
    return int(w) if isinstance(w, (int, float)) and not math.isnan(w) and w >= 1 else 1


def build_end_to_end(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per method (main runs) and dataset/profile: the measured seconds of search, retraining
    and transfer (detection + re-ID of the same backbone name) per seed, as process-seconds (wall
    seconds x processes), and their total in the unit of the device (CPU-hours on CPU, GPU-days
    on GPU): the cost a user pays end to end, not the search phase alone."""
    main = metrics[metrics["ablation_key"] == ""]
    train = main[main["stage"] == "train"]
    rows = []
    for (method, dataset, profile), g in train.groupby(["method", "dataset", "profile"]):
        seeds = set(g["seed"])

        def seconds(stage: str, col: str) -> tuple[float, int]:
            """Mean process-seconds (wall seconds x processes) of a stage's runs."""
            s = main[(main["stage"] == stage) & (main["method"] == method)
                     & (main["profile"] == profile) & (main["seed"].isin(seeds))]
            vals = [float(r[col]) * _world(r) for _, r in s.iterrows()
                    if r[col] is not None and not math.isnan(float(r[col]))]
            return (sum(vals) / len(vals) if vals else 0.0), len(vals)

        search_s, n_search = seconds("search", "search_seconds")
        train_s, _ = seconds("train", "train_seconds")
        detect_s, n_det = seconds("detect", "train_seconds")
        reid_s, n_reid = seconds("reid", "train_seconds")
        total = search_s + train_s + detect_s + reid_s
        kinds = set(g["device_kind"])
        unit = "GPU-days" if kinds == {"gpu"} else "CPU-hours" if kinds == {"cpu"} else "mixed"
        per_unit = 86400.0 if unit == "GPU-days" else 3600.0
        rows.append({
            "method": method, "dataset": dataset, "profile": profile, "n seeds": len(g),
            "search (s)": fmt_num(round(search_s, 1)) if n_search else "not searched",
            "retraining (s)": fmt_num(round(train_s, 1)),
            "detection (s)": fmt_num(round(detect_s, 1)) if n_det else "—",
            "re-ID (s)": fmt_num(round(reid_s, 1)) if n_reid else "—",
            "total per seed (s)": fmt_num(round(total, 1)),
            "total per seed": "—" if unit == "mixed" else f"{total / per_unit:.4g} {unit}",
        })
    return pd.DataFrame(rows)
