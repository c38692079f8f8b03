"""Verdicts on the papers' claims, judged from the harness' metrics files alone.

Every claim of CP-NAS (Zhuo et al., IJCAI 2020) and DCP-NAS (Li et al., IJCV 2023) that
docs/papers.md lists gets one verdict: ``supports``, ``contradicts`` or ``cannot say``,
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

The rules live in ``accuracy_claims`` and ``cost_claims``; the helpers they share with the
tables and plots (seed statistics, formatting, cell selection) in ``stats`` and ``selection``,
so the tables, the plots and the verdicts use exactly the same numbers. No torch here.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.report.accuracy_claims import (ablation_claims, absolute_claims, memory_claims,
                                            ranking_claim, transfer_claim)
from harness.report.cost_claims import (collapse_claim, ggn_claim, search_cost_claims,
                                        speedup_claims)
from harness.report.selection import main_rows
from harness.report.verdicts import ClaimResult, one_line
from harness.report.vocabulary import BASELINES, VERDICTS


def evaluate_claims(metrics: pd.DataFrame, paper: pd.DataFrame) -> list[ClaimResult]:
    """One verdict per claim of docs/papers.md.

    ``metrics`` is the frame of ``harness.report.load_metrics``; ``paper`` the frame of
    ``harness.report.load_paper_numbers``."""
    train = metrics[metrics["stage"] == "train"]
    search = metrics[metrics["stage"] == "search"]
    train_main, search_main = main_rows(train), main_rows(search)

    out: list[ClaimResult] = []
    v, why = ranking_claim(train_main, "dcpnas", ["cpnas"])
    out.append(ClaimResult("R1", "DCP-NAS reaches a higher top-1 than CP-NAS (same dataset and profile)",
                           "Li et al., DCP-NAS, IJCV 2023 (docs/papers.md)", v, why))
    v, why = ranking_claim(train_main, "dcpnas", BASELINES)
    out.append(ClaimResult("R2", "DCP-NAS reaches a higher top-1 than every baseline run "
                                 "(direct BNAS, DARTS, PC-DARTS, random, ...; same dataset and profile)",
                           "Li et al., DCP-NAS, IJCV 2023 (docs/papers.md)", v, why))
    out.extend(ablation_claims(train, paper))
    out.extend(absolute_claims(paper, train_main))
    out.extend(memory_claims(paper, train_main))
    sc = search_cost_claims(paper, search_main)
    out.extend(sc)
    out.extend(speedup_claims(paper, search_main, start=len(sc) + 1))
    out.append(ggn_claim(paper, search, train))
    out.append(collapse_claim(search_main))
    out.append(transfer_claim(metrics))
    for c in out:
        assert c.verdict in VERDICTS, c
        c.why = one_line(c.why)
        c.claim = one_line(c.claim)
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
