"""Seed statistics and their formatting, shared by the tables, the plots and the verdicts (so
they use exactly the same numbers).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass

from harness.report.vocabulary import CANNOT_SAY, CONTRADICTS, SUPPORTS


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
    """'mean ± std' (n >= 2), the value (n = 1: the table's "n seeds" says so), or '—' when
    there is no value."""
    if s.n == 0:
        return "—"
    if s.n == 1:
        return format(s.mean, spec)
    return f"{format(s.mean, spec)} ± {format(s.std, spec)}"


def fmt_num(v: float) -> str:
    """A paper number as written (95.27, 64.3, 0.1)."""
    return f"{round(float(v), 6):g}"


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
