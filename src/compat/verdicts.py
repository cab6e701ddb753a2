"""One vocabulary for every chapter's verdict: three labels, one headline, one line per claim, one summary.

Each paper's chapter decides its label by its own rule (written in its ``outcome``, from claims decided by
intervals: :meth:`compat.experiments.base.Experiment.check_claims`), and states it through this module, so
that "partly reproduced" means the same thing on every page: the paper's central comparison holds, not
everything it claims does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import check_choice

LABELS = ("reproduced", "partly reproduced", "not reproduced")

RULES = """**How a verdict is decided.** A claim *holds* when the 95 % interval of its paired difference (bootstrap over
the val queries, seeds pooled) lies above 0 and every seed's own difference does too. A paper is *reproduced*
when every claim its chapter tests holds (and, where the chapter says so, our effect reaches the published
range); *partly reproduced* when the paper's central comparison holds but not everything else does; *not
reproduced* when the central comparison does not hold. Each chapter names its central comparison and rule
beside its verdict; a difference inside the noise decides nothing, so it never counts as holding."""


@dataclass(frozen=True)
class Outcome:
    """A chapter's verdict at one distance: its label, the reason in one sentence, and the claim that decided it
    with its difference (percentage points) and 95 % interval."""

    paper: str
    distance: str
    label: str
    reason: str
    claim: str
    difference: float
    low: float
    high: float
    seeds: int

    def __post_init__(self) -> None:
        check_choice("verdict label", self.label, LABELS)


def decide(paper: str, distance: str, label: str, reason: str, checked: pd.DataFrame, deciding: str, seeds: int) -> Outcome:
    """An :class:`Outcome` whose deciding claim is row ``deciding`` of a :meth:`check_claims` table (NaN
    differences where that claim could not be tested, e.g. a diverged run)."""
    row = checked.set_index("claim").loc[deciding] if deciding in set(checked["claim"]) else None
    value, low, high = (np.nan,) * 3 if row is None else (float(row[c]) for c in ("difference (points)", "95% CI low", "95% CI high"))
    return Outcome(paper, distance, label, reason, deciding, value, low, high, seeds)


def headline(outcome: Outcome) -> str:
    """The verdict's first line: label and reason, bold label, and the rule's reading of a claim."""
    return (
        f"**{outcome.distance} distance: {outcome.label}.** {outcome.reason} (top-1; a claim holds when the 95 % "
        f"interval of the difference lies above 0 and every one of {outcome.seeds} seeds agrees)"
    )


def claim_line(claim: pd.Series) -> str:
    """One claim of a :meth:`check_claims` table as a verdict's list item."""
    return (
        f"- {'holds' if claim['holds'] else 'does not hold'}: {claim['claim']} ({claim['difference (points)']:+.2f} points, "
        f"95 % CI {claim['95% CI low']:+.2f} to {claim['95% CI high']:+.2f}; seeds {claim['per seed']})"
    )


def summary(outcomes: list[Outcome]) -> pd.DataFrame:
    """Paper x distance: the label and the deciding claim with its difference and interval (the book's outcomes table)."""
    return pd.DataFrame.from_records(
        [
            {
                "paper": o.paper,
                "distance": o.distance,
                "verdict": o.label,
                "deciding claim": o.claim,
                "difference (points) [95% CI]": (f"{o.difference:+.2f} [{o.low:+.2f}, {o.high:+.2f}]" if np.isfinite(o.difference) else "not tested"),
                "seeds": o.seeds,
                "why": o.reason,
            }
            for o in outcomes
        ]
    ).set_index(["paper", "distance"])
