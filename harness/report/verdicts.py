"""What a claim's verdict is made of: ``ClaimResult`` and the aggregation of per-group
verdicts into one line.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report.stats import Stats, all_of, fmt_num, fmt_stats, seed_stats
from harness.report.vocabulary import (ABS_TOL_PP, CANNOT_SAY, CONTRADICTS, SUPPORTS,
                                       is_paper_scale, is_smoke, profile_rank, profile_sort_key)


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
class ClaimGroup:
    label: str
    rank: int
    verdict: str
    reason: str
    detail: str


def one_line(s: str) -> str:
    return " ".join(str(s).split())


def aggregate(groups: list[ClaimGroup], not_run_detail: str = "") -> tuple[str, str]:
    """Combine the verdicts of several (dataset, profile) groups into one."""
    if not groups:
        return CANNOT_SAY, one_line("not run" + (f" ({not_run_detail})" if not_run_detail else ""))
    groups = sorted(groups, key=lambda g: (-g.rank, g.label))
    decisive = [g for g in groups if g.verdict != CANNOT_SAY]

    def details(gs):
        return "; ".join(f"[{g.label}] {g.detail}" for g in gs if g.detail)

    if decisive:
        kinds = {g.verdict for g in decisive}
        if len(kinds) == 1:
            return decisive[0].verdict, one_line(f"{decisive[0].reason} ({details(decisive)})")
        return CANNOT_SAY, one_line(
            "mixed evidence: "
            + ", ".join(f"{g.verdict} on {g.label}" for g in decisive)
            + f" ({details(decisive)})")
    best = groups[0]
    return CANNOT_SAY, one_line(f"{best.reason} ({details(groups)})" if details(groups)
                                 else best.reason)


def train_groups(train_main: pd.DataFrame):
    if train_main.empty:
        return []
    return sorted(train_main.groupby(["dataset", "profile"]),
                  key=lambda kv: (profile_sort_key(kv[0][1]), kv[0][0]))


def stats_of(g: pd.DataFrame, method: str, col: str = "top1") -> Stats:
    return seed_stats(g.loc[g["method"] == method, col].tolist())


def comparison_group(label: str, profile: str, comps: list[tuple[str, str, str]]) -> ClaimGroup:
    """One group of a claim made of comparisons that must all hold; smoke data judges none."""
    if is_smoke(profile):
        return ClaimGroup(label, profile_rank(profile), CANNOT_SAY, "synthetic smoke data",
                      "; ".join(c[2] for c in comps))
    return ClaimGroup(label, profile_rank(profile), *all_of(comps))


def judge_absolute(s: Stats, paper_value: float, profile: str, what: str,
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
