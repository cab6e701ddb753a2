"""Tables formatted for reading: each value with its 95 % interval, chosen precision, units in the
headers, nothing empty shown as NaN, diverged runs named as such."""

from __future__ import annotations

import numpy as np
import pandas as pd

LABELS = {"top1": "top-1 (%)", "top5": "top-5 (%)", "mAP": "mAP (%)"}


def _cell(value, low, high, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def interval_cells(frame: pd.DataFrame, metrics=("top1", "mAP"), gains=("top1",)) -> pd.DataFrame:
    """From :func:`compat.experiments.base.interval_table`: "mean [low, high]" per metric (the interval:
    95 % paired bootstrap over queries, seeds pooled), the seed spread, and the update gain G where defined."""
    out = pd.DataFrame(index=frame.index)
    diverged = frame["diverged"] if "diverged" in frame else pd.Series("", index=frame.index)
    for m in metrics:
        out[LABELS[m] + " [95% CI]"] = [
            f"diverged: {d}" if isinstance(d, str) and d else _cell(r[m], r[f"{m} low"], r[f"{m} high"], 1)
            for (_, r), d in zip(frame.iterrows(), diverged)
        ]
    sd = f"{metrics[0]} seed sd"
    if sd in frame and frame[sd].notna().any():
        out[f"{LABELS[metrics[0]].removesuffix(' (%)')} sd over seeds"] = [f"{v:.2f}" if pd.notna(v) else "" for v in frame[sd]]
    for m in gains:
        if f"G {m}" in frame:
            out[f"G {LABELS[m].removesuffix(' (%)')} [95% CI]"] = [
                _cell(r[f"G {m}"], r[f"G {m} low"], r[f"G {m} high"], 2) if pd.notna(r.get(f"G {m}")) else "" for _, r in frame.iterrows()
            ]
    out["seeds"] = frame["seeds"].astype(int)
    return out


def claims_cells(checked: pd.DataFrame) -> pd.DataFrame:
    """A claims table as words: the difference with its interval, per-seed values, holds / does not hold."""
    return pd.DataFrame(
        {
            "claim": checked["claim"],
            "difference (points) [95% CI]": [_cell(r["difference (points)"], r["95% CI low"], r["95% CI high"], 2) for _, r in checked.iterrows()],
            "per seed": checked["per seed"],
            "verdict": ["holds" if h else "does not hold" for h in checked["holds"]],
        }
    ).set_index("claim")


def published_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A published table as quoted: metrics with one decimal (as the READMEs print them), gains computed from
    them with two, empty where a source gives no number."""
    return frame.apply(lambda col: col.map(lambda v: "" if pd.isna(v) else f"{v:.2f}" if str(col.name).startswith("G") else f"{v:.1f}"))


def cost_cells(cost: dict) -> tuple[pd.DataFrame, str]:
    """An upgrade-cost result file as a table (per gallery size N and method: time, rows per second, inputs
    and peak extra memory, units in the headers) and a sentence with the measured ratio and where it ran."""
    frame = pd.DataFrame(cost["rows"])
    table = frame.pivot(index="n", columns="method", values=["seconds", "rows_per_s", "input_mb", "peak_extra_mb"])
    names = {"seconds": "time (s)", "rows_per_s": "rows per s", "input_mb": "inputs (MB)", "peak_extra_mb": "peak extra memory (MB)"}
    table = table.rename(columns=names, level=0).rename_axis(index="gallery size N", columns=["", "method"])
    table = table.map(lambda v: "" if pd.isna(v) else f"{v:,.3f}" if v < 10 else f"{v:,.0f}")
    seconds = frame.pivot(index="n", columns="method", values="seconds")
    env = cost["environment"]
    text = (
        "Re-embedding takes **"
        + ", ".join(f"{r:,.0f}x" for r in seconds["re-embed"] / seconds["upgrade"])
        + f"** the upgrade's time at N = {', '.join(f'{n:,d}' for n in seconds.index)} "
        + f"(measured on {env['device']}, revision {env['git_revision'][:12]})."
    )
    return table, text


def study_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The UniBCT study's table (:func:`compat.experiments.unibct_study.study_table`) as read: top-1 with 95 %
    intervals, the final prototype loss as a share of ln C, and per setting the refinement's difference and word."""
    out = pd.DataFrame(
        {
            "new/old top-1 (%) [95% CI]": [_cell(r["new/old"], r["new/old low"], r["new/old high"], 1) for _, r in frame.iterrows()],
            "new/new top-1 (%) [95% CI]": [_cell(r["new/new"], r["new/new low"], r["new/new high"], 1) for _, r in frame.iterrows()],
            "prototype loss / ln C (last epoch)": [f"{v:.2f}" for v in frame["final share of ln C"]],
            "refined - plain, new/old [95% CI]": [
                _cell(r["refined - plain (new/old)"], r["refined - plain low"], r["refined - plain high"], 2) if r["method"] == "UniBCT" else ""
                for _, r in frame.iterrows()
            ],
            "refinement": [r["refinement"] if r["method"] == "UniBCT" else "" for _, r in frame.iterrows()],
            "seeds": frame["seeds"].astype(int),
        }
    )
    out.index = pd.MultiIndex.from_frame(frame[["scenario", "setting", "method"]])
    return out


def error_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Upgrade errors (:func:`compat.experiments.base.upgrade_errors`) as read: the MSE with its 95 % interval."""
    return pd.DataFrame(
        {
            "MSE [95% CI]": [f"{r['MSE']:.4g} [{r['MSE low']:.4g}, {r['MSE high']:.4g}]" for _, r in frame.iterrows()],
            "seeds": frame["seeds"].astype(int),
        },
        index=frame.index,
    )


def outcome_markdown(outcomes: pd.DataFrame) -> str:
    """The outcomes table (:func:`compat.verdicts.summary`) as Markdown: one row per paper and distance with the
    label in bold, the deciding claim and its difference (each paper named once), then each row's reason and seeds
    as a list under it, so that the table's columns stay wide enough for whole words."""
    frame = outcomes.reset_index()
    reasons = [f"- {r['paper']}, {r['distance']} ({r['seeds']} seeds): {r['why']}" for _, r in frame.iterrows()]
    frame["verdict"] = "**" + frame["verdict"] + "**"
    frame["paper"] = frame["paper"].where(frame["paper"] != frame["paper"].shift(), "")
    table = frame.drop(columns=["why", "seeds"]).to_markdown(index=False)
    return table + "\n\n" + "\n".join(reasons)
