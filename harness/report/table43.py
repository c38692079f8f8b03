"""Table 4.3 of the DCP-NAS book chapter (search strategies on ImageNet) from ImageNet-search
runs, with the paper's numbers beside and the full paper-imagenet search projected from the
measured cost per step.

Rows: every main search run and Table 4.3 ablation whose search data is an ImageNet-style
folder (``search_imagenet``), one per (method, variant, profile): its components (DCP-NAS:
tangent propagation, GGN or exact second order, decoupled optimization), the measured seconds
per step and search cost, the top-1 of its retrained network, the paper's top-1 and search cost
for that row, and the projection of a full paper-imagenet search from
``benchmarks/bench_paper_profiles.py`` (``results/bench/paper_profiles*.json``), labelled with its
inputs. The verdict compares only where the scale allows it and says why not otherwise.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from harness.report.selection import (column_stats, decoupled_of, device_list, paper_rows,
                                      paper_text, search_setting, second_order_of)
from harness.report.stats import fmt_stats
from harness.report.vocabulary import (COST_CONTRADICT_FACTOR, COST_SUPPORT_FACTOR, TABLE_43,
                                       is_paper_scale, is_smoke, profile_sort_key)


#: the projections ``harness report`` reads: a GPU run's before a CPU run's
BENCH_FILES = ("paper_profiles-cuda.json", "paper_profiles.json")
#: the profile whose full search is projected
PROJECTED_PROFILE = "paper-imagenet"
#: Table 4.3's DCP-NAS rows by (second order exact?, decoupled?), as results/paper_numbers.csv
#: names them (the reading of the lost check marks is inferred there)
DCPNAS_ROWS = {(True, False): "row 1 of 4", (False, False): "row 2 of 4",
               (True, True): "row 3 of 4", (False, True): "row 4 of 4"}
#: the paper's row for a method of ours (Table 4.3 has no row for direct BNAS: BNAS is
#: another method, shown beside it as the nearest 1-bit search baseline)
PAPER_METHOD = {"direct_bnas": "bnas"}
NOTES = [
    "ImageNet-search runs only (search_imagenet: the stride-8 ImageNet stem, a class-balanced "
    "sample of the training folder; the search-sample column names it: fractions, seed and the "
    "digest of its file lists, which each run keeps in sample.json). s/step: the mean wall time of a search step (no data "
    "loading or evaluation); search cost in the unit measured (CPU-hours on CPU, GPU-days on "
    "GPU). The paper's search-cost unit is not printed in the extracted table (GPU-days is the "
    "field's usual unit).",
    "Projection: a full paper-imagenet search from the per-step cost measured at the profile's "
    "network size and fitted to its batch (benchmarks/bench_paper_profiles.py); an upper bound "
    "(warm-up steps skip the architecture update). CPU-days do not compare with GPU-days.",
]


def load_bench(results_dir: Path) -> dict[str, Any] | None:
    """The newest paper-profile benchmark the report can use (a GPU one first), or None."""
    for name in BENCH_FILES:
        path = Path(results_dir) / "bench" / name
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                return None
    return None


def _components(row: pd.Series) -> str:
    if row["method"] != "dcpnas":
        return "—"
    exact = second_order_of(row) == "exact"
    tangent = bool(search_setting(row, "tangent", True))
    return (f"TP {'✓' if tangent else '✗'}, {'exact Hessian' if exact else 'GGN'}, "
            f"DO {'✓' if decoupled_of(row) else '✗'}")


def _paper(paper: pd.DataFrame, row: pd.Series, metric: str) -> pd.DataFrame:
    method = PAPER_METHOD.get(row["method"], row["method"])
    rows = paper_rows(paper, method=method, metric=metric)
    rows = rows[rows["table"] == TABLE_43]
    if row["method"] == "dcpnas":
        key = (second_order_of(row) == "exact", decoupled_of(row))
        rows = rows[rows["setting"].str.contains(DCPNAS_ROWS[key], regex=False)]
    return rows


def _paper_cell(rows: pd.DataFrame, ours: str, theirs: str) -> str:
    if rows.empty:
        return "—"
    vals = ", ".join(f"{paper_text(r)} {r['unit']}".replace(" %", "") for _, r in rows.iterrows())
    return vals + (f" ({theirs}, not {ours})" if theirs != ours else "")


def _sample_cell(g: pd.DataFrame) -> str:
    """Which class-balanced sample the runs searched on: fractions, seed and the digest of its
    file lists (each run's ``sample.json``)."""
    if "sample" not in g:
        return "—"
    cells = []
    for s in g["sample"]:
        if isinstance(s, dict) and s.get("digest"):
            cells.append(f"{100 * s['weights_fraction']:g} % / {100 * s['arch_fraction']:g} % "
                         f"per class, seed {s['seed']}, {s['digest'][:8]}")
    return "; ".join(dict.fromkeys(cells)) or "—"


def _projection(bench: dict[str, Any] | None, run: str) -> tuple[str, float | None, str]:
    """(cell, value, unit) of the projected full paper-imagenet search of ``run``."""
    if bench is None:
        return "not measured (run benchmarks/bench_paper_profiles.py)", None, ""
    prof = bench.get("profiles", {}).get(PROJECTED_PROFILE, {})
    p = prof.get("search", {}).get(run)
    if p is None:
        return ("—" if run == "random" else "not in the benchmark"), None, ""
    proj = p.get("projected_search")
    if proj is None:
        return f"— ({p.get('error', 'no projection')})", None, ""
    m = bench["measured"]
    return (f"{proj['value']:.3g} {proj['unit']} [projection: {proj['inputs']}; "
            f"{m['device']}, {m['threads']} thread(s), {m['date']}, commit "
            f"{str(m['commit'])[:7]}]", float(proj["value"]), proj["unit"])


def _verdict(profile: str, unit: str, proj_unit: str, proj: float | None,
             paper_cost: pd.DataFrame) -> str:
    if is_smoke(profile):
        return ("cannot say: smoke scale (generated images, tiny supernet); the projection "
                "column is the paper-scale estimate")
    if not is_paper_scale(profile):
        return f"cannot say: reduced {profile} budget"
    if paper_cost.empty:
        return "cannot say: no paper row"
    if unit != "GPU-days" and proj_unit != "GPU-days":
        return "cannot say: measured on CPU, the paper's cost is GPU time"
    value = proj if proj is not None else math.nan
    ref = float(paper_cost["value"].mean())
    if not math.isfinite(value):
        return "cannot say: no GPU projection"
    ratio = value / ref
    if ratio <= COST_SUPPORT_FACTOR:
        return f"supports: {ratio:.2f}x the paper's cost (GPU model may differ)"
    if ratio >= COST_CONTRADICT_FACTOR:
        return f"contradicts: {ratio:.2f}x the paper's cost"
    return f"cannot say: {ratio:.2f}x the paper's cost (between the tolerances)"


def build_table_43(metrics: pd.DataFrame, paper: pd.DataFrame,
                   bench: dict[str, Any] | None) -> pd.DataFrame:
    """Table 4.3 rows from the ImageNet-search runs in ``metrics`` (empty without any)."""
    search = metrics[(metrics["stage"] == "search") & (metrics["dataset"] == "imagenet")]
    search = search[(search["ablation_key"] == "") | (search["abl_table"] == TABLE_43)]
    train = metrics[(metrics["stage"] == "train") & (metrics["dataset"] == "imagenet")]
    rows = []
    order = {"random": 0, "direct_bnas": 1, "darts": 2, "pcdarts": 3, "cpnas": 4, "dcpnas": 5}
    groups = sorted(search.groupby(["method", "ablation_key", "profile"], sort=False),
                    key=lambda kv: (profile_sort_key(kv[0][2]), order.get(kv[0][0], 9),
                                    DCPNAS_ROWS.get((second_order_of(kv[1].iloc[0]) == "exact",
                                                     decoupled_of(kv[1].iloc[0])), ""),
                                    kv[0][1]))
    for (method, akey, profile), g in groups:
        first = g.iloc[0]
        run = first.get("run") or method          # the search run's name (an ablation's)
        units = sorted(set(g["search_cost_unit"]))
        unit = units[0] if len(units) == 1 else "mixed"
        t = train[(train["method"] == method) & (train["ablation_key"] == akey)
                  & (train["profile"] == profile) & train["seed"].isin(set(g["seed"]))]
        p_top1, p_cost = _paper(paper, first, "top1"), _paper(paper, first, "search_cost")
        theirs = PAPER_METHOD.get(method, method)
        proj_cell, proj, proj_unit = _projection(bench, run)
        rows.append({
            "method": method, "variant": first["variant"], "components": _components(first),
            "profile": profile, "n seeds": len(g), "search sample": _sample_cell(g),
            "device": device_list(g),
            "s/step": fmt_stats(column_stats(g, "seconds_per_step"), ".3g"),
            "search cost": f"{fmt_stats(column_stats(g, 'search_cost_value'), '.3g')} {unit}",
            "top-1 (%)": fmt_stats(column_stats(t, "top1")) if not t.empty else "not retrained",
            "paper top-1 (%)": _paper_cell(p_top1, method, theirs),
            "paper search cost": _paper_cell(p_cost, method, theirs),
            "projected full paper-imagenet search": proj_cell,
            "verdict": _verdict(profile, unit, proj_unit, proj, p_cost),
        })
    return pd.DataFrame(rows)
