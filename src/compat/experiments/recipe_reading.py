"""Reading the recipe study's result files (:mod:`compat.experiments.recipe` runs them): the decision rule
(:func:`decide`, fixed before the runs), the learning curves, the test-time and weight-averaging effects, and
which candidate the profile's old model is. Nothing here trains."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..intervals import Interval, difference_interval, per_query_metric
from ..store import Store
from .common import old_model
from .recipe import CANDIDATES, DECIDING, INCUMBENT, RecipeConfig, combination_name


def curves(results: list[dict]) -> pd.DataFrame:
    """One row per (candidate, seed, weights, embedding, epoch): samples seen (in epochs of the incumbent's
    training set), cumulative training minutes and val top-1."""
    records = []
    for res in results:
        minutes = 0.0
        for e in res["curve"]:  # empty for a diverged candidate
            minutes += e["seconds"] / 60
            for prefix, weights in (("val", "kept"), ("raw", "raw")):
                for flip in (False, True):
                    value = e.get(f"{prefix}_top1_flip" if flip else f"{prefix}_top1")
                    if value is None:
                        continue
                    records.append(
                        {
                            "candidate": res["candidate"],
                            "seed": res["seed"],
                            "epoch": e["epoch"],
                            "train minutes": minutes,
                            "weights": weights,
                            "embedding": "flip-averaged" if flip else "plain",
                            "top-1 (%)": value,
                        }
                    )
    return pd.DataFrame.from_records(records)


def _values(results: list[dict], name: str, case: str, seeds: tuple[int, ...], store: Store | None) -> np.ndarray:
    """Seeds x queries top-1 hits (%) of candidate ``name``'s test-time embedding ``case``."""
    store = store or Store()
    out = []
    for seed in seeds:
        res = next(r for r in results if r["candidate"] == name and r["seed"] == seed)
        pq = store.read_per_query("recipe", res["profile"], res["key"])
        out.append(per_query_metric({"rank": pq[f"l2|{case}|rank"]}, "top1"))
    return np.stack(out)


def samples_seen(res: dict) -> int:
    """Training images seen by a candidate's model (steps x batch), from its recorded recipe and log."""
    log = res["models"]["old"]
    return int(sum(e["images_per_s"] * e["seconds"] for e in log["epochs"]))


def decide(results: list[dict], config: RecipeConfig, store: Store | None = None) -> tuple[pd.DataFrame, str]:
    """The study's rule, fixed before its runs (the recipe chapter states it):

    1. **Budget**: the incumbent's samples seen (6 epochs). A candidate that sees more (``8 epochs``) is
       reported at its own cost and cannot win.
    2. **A win is above the noise**: a candidate wins when the 95 % paired bootstrap interval over val queries
       (seeds pooled) of its flip-averaged top-1 minus the incumbent's lies above 0 *and* every seed's
       difference is above 0 (:meth:`Interval.above`). A diverged candidate loses.
    3. **The recipe**: no winner keeps the incumbent; one winner is the recipe; with several, their combination
       (``recipe.combine``) is the recipe if it was run and beats the best single winner by rule 2, else the
       winner with the largest mean difference (fewer changes for an accuracy inside the noise).

    Runs at different precisions (``auto`` is bf16 only where the processor has it) are refused: not equal terms.

    :return: one row per candidate (difference, interval, per-seed values, verdict; on the combination's row, its
        paired interval against the best single winner, rule 3's test) and the chosen name.
    """
    seeds = config.seeds
    by_name = {r["candidate"]: r for r in results if r["seed"] == seeds[0]}
    if INCUMBENT not in by_name or by_name[INCUMBENT].get("diverged"):
        raise ConfigError("the recipe study needs the incumbent's results (it did not run or diverged)")
    precision = {r["models"]["old"].get("precision") for r in results if not r.get("diverged")}
    if len(precision) > 1:  # precision "auto" is bf16 on one machine and fp32 on another: not equal terms
        raise ConfigError(
            f"the study's runs trained at different precisions ({', '.join(sorted(map(str, precision)))}): "
            "rerun them on one kind of machine (or pin recipe.base_train.precision)"
        )
    budget = samples_seen(by_name[INCUMBENT])
    base = _values(results, INCUMBENT, DECIDING, seeds, store)
    records, intervals = [], {}
    for name in config.names:
        if name == INCUMBENT or name not in by_name:
            continue
        if any(r.get("diverged") for r in results if r["candidate"] == name):
            records.append({"candidate": name, "verdict": "diverged"})
            continue
        iv = difference_interval(_values(results, name, DECIDING, seeds, store), base)
        over = samples_seen(by_name[name]) > 1.01 * budget
        intervals[name] = iv
        verdict = "over the budget" if over else "wins" if iv.above(0) else "below" if iv.high < 0 else "inside the noise"
        records.append(
            {
                "candidate": name,
                "difference": iv.value,
                "low": iv.low,
                "high": iv.high,
                "per seed": ", ".join(f"{v:+.2f}" for v in iv.per_seed),
                "samples seen / budget": samples_seen(by_name[name]) / budget,
                "verdict": verdict,
            }
        )
    table = pd.DataFrame.from_records(records).set_index("candidate") if records else pd.DataFrame()
    winners = [n for n in intervals if n in CANDIDATES and table.loc[n, "verdict"] == "wins"]
    compare = lambda a, b: _pair(results, a, b, seeds, store)  # noqa: E731
    combination = combination_name(config.combine) if config.combine else None
    if winners and combination in intervals:  # rule 3's test, shown on the combination's row
        best = max(winners, key=lambda n: intervals[n].value)
        iv = compare(combination, best)
        table["minus the best single winner"] = ""  # the other rows have no such test: empty, never NaN
        table.loc[combination, "minus the best single winner"] = f"{iv.value:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}] ({best})"
    return table, choose(winners, intervals, config.combine, compare)


def _pair(results, better: str, worse: str, seeds, store) -> Interval:
    return difference_interval(_values(results, better, DECIDING, seeds, store), _values(results, worse, DECIDING, seeds, store))


def choose(winners: list[str], intervals: dict[str, Interval], combine: tuple[str, ...], compare) -> str:
    """Rule 3 of :func:`decide`: the recipe from the winners, their differences from the incumbent (``intervals``)
    and ``compare(a, b)``, the paired interval of a minus b."""
    if not winners:
        return INCUMBENT
    best = max(winners, key=lambda n: intervals[n].value)
    combination = combination_name(combine) if combine else None
    if len(winners) > 1 and combination in intervals and sorted(combine) == sorted(winners) and compare(combination, best).above(0):
        return combination
    return best


def test_time_choice(results: list[dict], config: RecipeConfig, store: Store | None = None) -> Interval:
    """Does airbench's fuller test-time augmentation (one-pixel shifts) beat flip averaging? Paired interval of
    its top-1 minus the flip-averaged top-1, on the incumbent's models (the same weights both sides)."""
    return difference_interval(
        _values(results, INCUMBENT, "flip + 1-px shifts", config.seeds, store), _values(results, INCUMBENT, DECIDING, config.seeds, store)
    )


def averaging_effect(results: list[dict], config: RecipeConfig, store: Store | None = None) -> Interval:
    """Do the incumbent's EMA weights beat its raw weights? Paired interval (flip-averaged top-1) from one run."""
    return difference_interval(
        _values(results, INCUMBENT, DECIDING, config.seeds, store), _values(results, INCUMBENT, "raw weights, flip-averaged", config.seeds, store)
    )


def chosen_candidate(profile, results: list[dict]) -> str | None:
    """The candidate whose stored model is the profile's own old model of the study's first seed (None: no candidate is)."""
    key = old_model(profile, profile.recipe.seeds[0]).key
    return next((r["candidate"] for r in results if r["models"].get("old", {}).get("key") == key), None)
