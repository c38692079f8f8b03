"""Claims about accuracy and memory: absolute numbers against the papers', rankings between
methods, the ablations of Tables 4.2 / 4.4, and transfer.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.report.selection import (distance_cells, paper_rows, paper_text, paper_top1,
                                      paper_top1_text, tangent_lr_cells)
from harness.report.stats import all_of, compare_greater, fmt_stats, seed_stats
from harness.report.verdicts import (ClaimResult, ClaimGroup, aggregate, comparison_group,
                                     judge_absolute, one_line, stats_of, train_groups)
from harness.report.vocabulary import (CANNOT_SAY, CONTRADICTS, DISTANCES, DISTANCE_LABELS,
                                       DISTANCE_SETTINGS, HEADLINE_SETTINGS, MEMORY_REL_TOL,
                                       NOT_RUN_NOTE, PUBLISHED_AS, SETTING_L_FULL, SETTING_L_NONE,
                                       SETTING_L_ONE, SETTING_MAIN, SUPPORTS, TANGENT_LR_LABELS,
                                       dataset_label, is_smoke, method_label, method_sort_key,
                                       profile_rank)


def ranking_claim(train_main: pd.DataFrame, a: str, opponents: Sequence[str]) -> tuple[str, str]:
    groups = []
    for (dataset, profile), g in train_groups(train_main):
        present = [m for m in sorted(set(g["method"]), key=method_sort_key) if m in opponents]
        sa = stats_of(g, a)
        if sa.n == 0 or not present:
            continue
        comps = [compare_greater(sa, stats_of(g, m), method_label(a), method_label(m))
                 for m in present]
        groups.append(comparison_group(f"{dataset}/{profile}", profile, comps))
    return aggregate(groups, f"needs train runs of {method_label(a)} and of "
                              f"{' / '.join(method_label(m) for m in opponents)} on the same "
                              "dataset and profile")


def size_of(setting: str) -> str | None:
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


def runs_on(df: pd.DataFrame, method: str, paper_dataset: str) -> pd.DataFrame:
    if df.empty:
        return df
    return df[(df["method"] == method) & (df["dataset"].map(dataset_label) == paper_dataset)]


def where_else(df: pd.DataFrame, method: str) -> str:
    if df.empty:
        return ""
    other = df[df["method"] == method]
    if other.empty:
        return ""
    pairs = sorted({f"{d}/{p}" for d, p in zip(other["dataset"], other["profile"])})
    return f"; {method} runs exist on {', '.join(pairs)}"


def absolute_claims(paper: pd.DataFrame, train_main: pd.DataFrame) -> list[ClaimResult]:
    out = []
    heads = paper_rows(paper, metric=("top1", "top1_error"), settings=HEADLINE_SETTINGS)
    for i, (_, row) in enumerate(heads.iterrows(), start=1):
        method, pds, setting = row["method"], row["dataset"], row["setting"]
        size = size_of(setting)
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
        runs = _filter_size(runs_on(train_main, method, pds), size)
        for pub, (as_method, as_size) in PUBLISHED_AS.items():
            if (method, size) == (as_method, as_size):   # the published cell, retrained
                runs = pd.concat([runs, runs_on(train_main, pub, pds)])
        groups = []
        for (dataset, profile), g in train_groups(runs):
            comps = [judge_absolute(seed_stats(g["top1"]), p1, profile, "top-1", p1t)]
            if p5 is not None:
                comps.append(judge_absolute(seed_stats(g["top5"]), p5, profile, "top-5", p5t))
            v, r, d = all_of(comps)
            if v == CONTRADICTS and size and _untagged(g):
                v, r = CANNOT_SAY, (f"run not tagged as DCP-NAS-{size} (optional train key "
                                    "'size'), so missing its number says nothing")
            groups.append(ClaimGroup(f"{dataset}/{profile}", profile_rank(profile), v, r, d))
        v, why = aggregate(groups, f"no {method} train run on {pds}"
                                    + where_else(train_main, method))
        out.append(ClaimResult(f"A{i}", text, str(row["source"]), v, why))
    return out


def memory_claims(paper: pd.DataFrame, train_main: pd.DataFrame) -> list[ClaimResult]:
    out = []
    rows = paper_rows(paper, metric="memory", settings=HEADLINE_SETTINGS)
    for i, (_, row) in enumerate(rows.iterrows(), start=1):
        method, pds, setting = row["method"], row["dataset"], row["setting"]
        size = size_of(setting)
        name = method_label(method) + (f"-{size}" if size else "")
        text = f"{row['paper']}: {name} needs {paper_text(row)} {row['unit']} of memory on {pds}"
        runs = _filter_size(runs_on(train_main, method, pds), size)
        groups = []
        for (dataset, profile), g in train_groups(runs):
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
            groups.append(ClaimGroup(f"{dataset}/{profile}", profile_rank(profile), v, r, detail))
        v, why = aggregate(groups, f"no {method} train run on {pds}" + where_else(train_main, method))
        out.append(ClaimResult(f"M{i}", text, str(row["source"]), v, why))
    return out


def _ablation_group(dataset: str, profile: str, comps: list[tuple[str, str, str]],
                    missing: list[str]) -> ClaimGroup:
    """One (dataset, profile) group of an ablation claim: every comparison must hold."""
    label = f"{dataset}/{profile}"
    if any(c[1] == "not run" for c in comps):
        return ClaimGroup(label, profile_rank(profile), CANNOT_SAY, "not run",
                      f"missing cells: {', '.join(missing)}")
    return comparison_group(label, profile, comps)


def ablation_claims(train: pd.DataFrame, paper: pd.DataFrame) -> list[ClaimResult]:
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
        v, why = aggregate(groups, "no Table 4.2 ablation train runs")
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
    v, why = aggregate(groups, "no Table 4.4 ablation train runs")
    out.append(ClaimResult("D1", f"DCP-NAS Table 4.4: the F-norm distance gives the best top-1 "
                                 f"(beats L1 and cosine){p44}", src44, v, why))
    return out


def transfer_claim(metrics: pd.DataFrame) -> ClaimResult:
    parts = []
    for stage, col, name in (("detect", "bbox_mAP", "detection bbox mAP"), ("reid", "mAP", "re-ID mAP")):
        d = metrics[metrics["stage"] == stage]
        if d.empty:
            continue
        s = seed_stats(d[col])
        parts.append(f"{name} measured on {', '.join(sorted(set(d['dataset'])))} "
                     f"(mean {s.mean:.2f} over {s.n} run{'s' if s.n != 1 else ''})")
    if parts:
        why = ("the papers give no readable reference numbers for detection / re-ID to compare with; "
               + "; ".join(parts))
    else:
        why = "not run (no detect / reid metrics files)"
    return ClaimResult("X1", "DCP-NAS backbones transfer to object detection and person re-ID",
                       "Li et al., DCP-NAS, IJCV 2023 (docs/papers.md)",
                       CANNOT_SAY, one_line(why))
