"""Writing the report: Markdown / CSV tables with their notes, rich tables on the console, and
REPORT.md.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from backbones.atomic import atomic_write_bytes
from harness.report.claims import render_claims_markdown
from harness.report.selection import device_list, paper_text, paper_top1
from harness.report.stats import fmt_num
from harness.report.vocabulary import (ABS_TOL_PP, COST_CONTRADICT_FACTOR, COST_SUPPORT_FACTOR,
                                       HEADLINE_SETTINGS, SETTING_L_ONE, is_smoke, method_label,
                                       profile_regime, profile_sort_key)


#: every table build_report may write (stale files of tables not produced are removed)
TABLE_NAMES = ("runs_summary", "classification", "classification_vs_paper", "end_to_end_cost",
               "search_cost", "table_4_3", "ablation_tangent_lr", "ablation_distance",
               "detection", "reid", "deployment", "claims")


def _dirs_label(dirs: list[Path]) -> str:
    return ", ".join(f"`{d}`" for d in dirs)


def atomic_write(path: Path, data: str | bytes) -> None:
    atomic_write_bytes(path, data if isinstance(data, bytes) else data.encode("utf-8"))


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True)   # "8.20" stays as formatted


def markdown_with_notes(df: pd.DataFrame, notes: list[str]) -> str:
    text = _md(df) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def print_table(console, name: str, df: pd.DataFrame, notes: list[str]) -> None:
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
    "classification_vs_paper": "Classification against the papers",
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
    own = paper[(paper["metric"] == "top1") & (paper["setting"].isin(HEADLINE_SETTINGS))]
    for _, e in err.iterrows():
        for _, o in own[(own["method"] == e["method"]) & (own["dataset"] == e["dataset"])].iterrows():
            conv = paper_top1(e)
            if abs(conv - float(o["value"])) > 0.05:
                notes.append(f"{method_label(e['method'])} on {e['dataset']}: the third-party table's "
                             f"error {paper_text(e)}% means {fmt_num(conv)}% top-1, but {o['paper']} "
                             f"reports {paper_text(o)}%; both are listed.")
            else:
                notes.append(f"{method_label(e['method'])} on {e['dataset']}: the third-party error "
                             f"{paper_text(e)}% agrees with {o['paper']} ({paper_text(o)}% top-1).")
    if (paper["setting"] == SETTING_L_ONE).any():
        notes.append("Table 4.2: the paper gives 68.3 and 68.2 top-1 for the two single-component "
                     "settings without saying which is which; they are recorded as 'one of tangent/L_R'.")
    unk = paper[(paper["metric"] == "search_cost") & (paper["unit"] != "GPU-days")]
    for _, r in unk.iterrows():
        notes.append(f"{r['paper']}: search cost {paper_text(r)} is quoted without a unit "
                     f"({r['unit']}); it is not compared with measured costs.")
    notes.append("DCP-NAS-L (Table 4.2) and DCP-NAS-S (Table 4.4) are different model sizes; the "
                 "harness' main DCP-NAS run stands in for the full cell of both tables. Train metrics "
                 "may carry an optional 'size' (S|L) so the absolute claims use the right run.")
    return notes


def render_report(runs_dir: list[Path], out_dir: Path, paper_path: Path, metrics: pd.DataFrame,
                   tables: dict[str, pd.DataFrame], notes: dict[str, list[str]],
                   plots: list, claim_results, paper: pd.DataFrame) -> str:
    L: list[str] = []
    L.append("# DCP-NAS / CP-NAS reproduction report\n")
    profiles = sorted(set(metrics["profile"]), key=profile_sort_key)
    kinds = sorted(set(metrics["device_kind"]))
    try:
        paper_disp = os.path.relpath(paper_path, out_dir)
    except ValueError:
        paper_disp = str(paper_path)
    L.append(f"Generated by `harness.report.build_report` from {len(metrics)} `metrics.json` files "
             f"under {_dirs_label(runs_dir)}; paper reference numbers from [`{paper_path.name}`]({paper_disp}) "
             "(the papers' numbers of docs/papers.md, each with its source).\n")
    L.append(f"- Profiles: {', '.join(profiles)}; datasets: {', '.join(sorted(set(metrics['dataset'])))}; "
             f"seeds: {', '.join(str(s) for s in sorted(set(metrics['seed'])))}; "
             f"devices: {device_list(metrics)} ({', '.join(kinds)}).")
    smokes = [p for p in profiles if is_smoke(p)]
    if smokes:
        who = ("all runs use" if smokes == profiles else
               f"runs with profile {', '.join(f'`{p}`' for p in smokes)} use")
        L.append(f"- **Smoke profile:** {who} synthetic data and tiny budgets; their numbers check "
                 "that the pipeline works and are not comparable with the papers' (the Δ columns say "
                 "'n/a (smoke data)').")
    reduced = [p for p in profiles if profile_regime(p) == "reduced"]
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
                ("classification_vs_paper", TABLE_TITLES["classification_vs_paper"]),
                ("end_to_end_cost", TABLE_TITLES["end_to_end_cost"]),
                ("search_cost", "Search cost"),
                ("table_4_3", TABLE_TITLES["table_4_3"]),
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
        L.append(markdown_with_notes(tables[name], notes.get(name, [])))
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
             f"judged only on a non-smoke profile on the paper's dataset, within ±max({ABS_TOL_PP:g} pp, "
             "2 seed std) (a shortfall on `real-subset` is 'cannot say'); GPU-day costs are not compared "
             f"with CPU-hours; GPU-day costs up to {COST_SUPPORT_FACTOR:g}× the paper's support it, above "
             f"{COST_CONTRADICT_FACTOR:g}× contradict it.\n")
    L.append(render_claims_markdown(claim_results))
    L.append("## Notes on the reference numbers\n")
    L.extend(f"- {n}" for n in _paper_notes(paper))
    L.append("")
    return "\n".join(L)
