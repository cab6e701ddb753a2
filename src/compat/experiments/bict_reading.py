"""Reading the BiCT results (:mod:`compat.experiments.bict` plans them): the thesis rule, the weight sweep's reading
and the chapter's tables and figures' inputs, from result files alone (nothing here trains)."""

from __future__ import annotations

import pandas as pd

from ..intervals import difference_interval
from ..store import Store
from .base import case_values

THESIS_RULE = """The thesis, that BiCT beats both BCT alone and FCT alone over sequential upgrades, is decided by
the claims at the last generation, each holding only when its 95 % interval lies above 0 and every seed agrees:
*reproduced* when the upgraded gallery beats the stored one at every generation and BiCT's forward upgrade beats
FCT's alone; *partly reproduced* when only the first holds (the forward half carries the gain); *not reproduced*
when the upgraded gallery loses or ties the stored one at some generation. The reading says "the BCT half does not
help" when BiCT and FCT alone are inside the noise of each other, and "the BCT half costs the forward upgrade"
when FCT alone is above BiCT."""


def thesis(upgraded: list[bool], bct_helps_forward: bool, bct_costs_forward: bool) -> tuple[str, str]:
    """The label and one sentence of :data:`THESIS_RULE`, from whether the upgraded gallery beats the stored one at
    each generation (2, 3, ...) and whether BiCT's forward upgrade is above, or below, FCT's alone."""
    if bct_helps_forward and bct_costs_forward:
        raise ValueError("BiCT cannot be both above and below FCT alone")
    half = (
        "the BCT half helps the forward upgrade"
        if bct_helps_forward
        else "the BCT half costs the forward upgrade (FCT alone is above BiCT)"
        if bct_costs_forward
        else "the BCT half does not help the forward upgrade measurably (BiCT and FCT alone are inside the noise)"
    )
    if upgraded and all(upgraded):
        label = "reproduced" if bct_helps_forward else "partly reproduced"
        return label, f"The upgraded gallery beats the stored one at every generation; {half}."
    lost = [str(g) for g, won in enumerate(upgraded, 2) if not won]
    return "not reproduced", f"The upgraded gallery does not beat the stored one at generation {', '.join(lost) or '-'}; {half}."


def main_variant(results: list[dict]) -> str:
    """How the main table's h's were trained, from the results' recorded config (``stepwise`` before the option)."""
    for res in results:
        return res["config"]["sections"]["bict"].get("transformations", ["stepwise"])[0]
    return "stepwise"


def last_generation(results: list[dict]) -> int:
    """The last generation among the results' cases (2 where none is named)."""
    cases = {r["case"] for res in results for r in res["rows"]}
    return max((int(c.split(":")[0].removeprefix("gen ")) for c in cases if c.startswith("gen ")), default=2)


def sweep_reading(results: list[dict], distance: str = "l2", store: Store | None = None, metric: str = "top1") -> list[dict] | None:
    """Backward and forward retrieval at the last generation: the sweep's best and worst (non-diverged) BCT weight and
    the paired interval of their difference (one seed); None without a sweep."""
    sweep = sweep_table(results, distance, metric)
    if sweep.empty:
        return None
    ablation = [r for r in results if r["kind"] == "ablation"]
    last = last_generation(results)
    out = []
    directions = sweep["diverged"].isna() & sweep["retrieval"].isin(["BCT only backward", "BiCT forward"])
    for retrieval, part in sweep[directions].groupby("retrieval"):
        best, worst = part.loc[part[metric].idxmax(), "BCT weight"], part.loc[part[metric].idxmin(), "BCT weight"]
        values = {w: case_values(ablation, f"gen {last}: {retrieval} (λ={w:g})", distance, metric, store) for w in (best, worst)}
        out.append({"retrieval": retrieval, "best": best, "worst": worst, "interval": difference_interval(values[best], values[worst])})
    return out


CHAIN_NAMES = {"bct": "BCT-trained models", "independent": "independently trained models"}  # what a reader sees


def _interval(row: pd.Series, metric: str) -> dict[str, float]:
    """A row of an interval table as the value, low, high a figure of :func:`compat.plots.interval_lines` reads."""
    return {"value": row[metric], "low": row[f"{metric} low"], "high": row[f"{metric} high"]}


def strategy_intervals(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Generation x strategy ``metric`` of the main seeds from an interval table, with its 95 % interval, in long form:
    generation (1, 2, ...), strategy, value, low, high."""
    records = []
    for case, row in table.iterrows():
        if case.startswith("gen ") and "chain" not in case and pd.notna(row.get(metric)):
            gen, what = case.split(": ", 1)
            records.append({"generation": int(gen.removeprefix("gen ")), "strategy": what, **_interval(row, metric)})
    return pd.DataFrame.from_records(records)


def sweep_intervals(ablation: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """The sweep's last generation from the ablation's interval table: BCT weight, retrieval, value, low, high."""
    cases = [c for c in ablation.index if c.startswith("gen ") and "(λ=" in c]
    last = max((int(c.split(":")[0].removeprefix("gen ")) for c in cases), default=0)
    records = []
    for case in cases:
        if case.startswith(f"gen {last}:") and pd.notna(ablation.loc[case].get(metric)):
            what, weight = case.split(": ", 1)[1].rsplit(" (λ=", 1)
            row = ablation.loc[case]
            records.append({"BCT weight": float(weight.rstrip(")")), "retrieval": what, **_interval(row, metric)})
    return pd.DataFrame.from_records(records)


def compatibility_matrix(table: pd.DataFrame, chain: str, metric: str = "top1") -> pd.DataFrame:
    """Generation x generation ``metric`` of one model chain (queries by row generation, gallery by column)."""
    cells = {}
    for case, row in table.iterrows():
        if case.startswith(f"{chain} chain: "):
            q, gal = case.removeprefix(f"{chain} chain: ").split(", ")
            cells.setdefault(q.replace(" queries", ""), {})[gal.replace(" gallery", "")] = row.get(metric)
    return pd.DataFrame(cells).T.sort_index().sort_index(axis=1)


def sweep_table(results: list[dict], distance: str = "l2", metric: str = "top1") -> pd.DataFrame:
    """The ablation's BCT weights against backward and forward retrieval at the last generation."""
    res = next((r for r in results if r["kind"] == "ablation"), None)
    if res is None:
        return pd.DataFrame()
    records = []
    last = last_generation([res])
    for r in res["rows"]:
        if r["distance"] != distance or not r["case"].startswith(f"gen {last}:") or "λ=" not in r["case"]:
            continue
        what, weight = r["case"].split(": ", 1)[1].rsplit(" (λ=", 1)
        records.append({"BCT weight": float(weight.rstrip(")")), "retrieval": what, metric: r.get(metric), "diverged": r.get("diverged")})
    return pd.DataFrame.from_records(records)
