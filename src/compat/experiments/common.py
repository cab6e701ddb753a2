"""What every table's experiment shares: evaluating (query, gallery) cases with update gains, model
provenance records, and the mean ± spread tables over seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..evaluate import retrieval_metrics, update_gain
from ..provenance import environment
from ..store import Store, canonical

METRICS = ("top1", "top5", "mAP")


def evaluate_cases(
    embeddings: Mapping[str, np.ndarray],
    labels: np.ndarray,
    cases: Sequence[tuple[str, str, str]],
    distances: Sequence[str],
    old_case: str,
    new_case: str,
) -> list[dict]:
    """Metrics of every (case, query, gallery) at every distance; each ``... new/old`` case also gets
    the update gain (BCT, Eq. 9) against ``old_case`` and ``new_case`` (None where they tie)."""
    rows = []
    for distance in distances:
        for case, query, gallery in cases:
            metrics = retrieval_metrics(embeddings[query], embeddings[gallery], labels, distance=distance)
            rows.append({"distance": distance, "case": case, "query": query, "gallery": gallery, **{m: metrics[m] for m in METRICS}})
    ref = {(r["distance"], r["case"]): r for r in rows}
    for r in rows:
        if r["case"].endswith("new/old"):
            old_old, new_new = ref[(r["distance"], old_case)], ref[(r["distance"], new_case)]
            for m in METRICS:
                r[f"gain_{m}"] = update_gain(r[m], old_old[m], new_new[m]) if new_new[m] != old_old[m] else None
    return rows


def model_record(store: Store, key: str) -> dict:
    """Provenance of one stored model or transformation: training time, speed, accuracy, precision, revision."""
    meta = store.model_meta(key)
    log = meta["log"]
    epochs = log["epochs"]
    return {
        "key": key,
        "train_seconds": log["train_seconds"],
        "images_per_s": float(np.mean([e["images_per_s"] for e in epochs])) if "images_per_s" in epochs[0] else None,
        "final_train_acc": epochs[-1].get("train_acc"),
        "final_mse": epochs[-1].get("mse"),
        "precision": log.get("precision", "fp32"),
        "device": log.get("device", meta["environment"].get("device", "cpu")),
        "trained_at_revision": meta["environment"]["git_revision"],
    }


def write_seed_result(store: Store, profile, seed: int, ablation: bool, key: str, rows: list[dict], models: dict,
                      wall_seconds: dict, experiment: str, **extra) -> dict:
    """Write (atomically) and return one seed's result file: metrics, models' provenance, full config, wall times, environment."""
    payload = {
        "experiment": experiment,
        "profile": profile.name,
        "seed": seed,
        "kind": "ablation" if ablation else "main",
        "key": key,
        "rows": rows,
        "models": models,
        **extra,
        "config": canonical(profile),
        "wall_seconds": wall_seconds,
        "environment": environment(),
    }
    store.write_result(experiment, profile.name, key, payload)
    return payload


def run_seeds(run_seed, profile, store: Store, ablation_seed: int | None) -> list[dict]:
    """``run_seed`` for every seed of the profile (the BCT table's seeds serve every chapter), then the
    one-seed ablation unless ``ablation_seed`` is None; last, so that on a tight budget the main seeds land first."""
    main = [run_seed(profile, seed, store) for seed in profile.bct.seeds]
    return main if ablation_seed is None else main + [run_seed(profile, ablation_seed, store, ablation=True)]


def main_results(results: list[dict]) -> list[dict]:
    return [r for r in results if r["kind"] == "main"]


def value(res: dict, distance: str, case: str, metric: str = "top1") -> float:
    return next(r[metric] for r in res["rows"] if r["distance"] == distance and r["case"] == case)


def long_table(results: list[dict]) -> pd.DataFrame:
    """One row per (seed, distance, case, metric): the measured value, and the update gain where defined."""
    records = []
    for res in results:
        for row in res["rows"]:
            for m in METRICS:
                records.append(
                    {"seed": res["seed"], "distance": row["distance"], "case": row["case"], "metric": m,
                     "value": row[m], "gain": row.get(f"gain_{m}")}
                )
    return pd.DataFrame.from_records(records)


def summary_table(results: list[dict], distance: str = "l2") -> pd.DataFrame:
    """Mean ± standard deviation over seeds at one distance: cases as rows, metrics and gains as columns."""
    long = long_table(main_results(results))
    long = long[long["distance"] == distance]
    order = list(dict.fromkeys(long["case"]))
    stats = long.groupby(["case", "metric"]).agg(
        value=("value", "mean"), value_sd=("value", "std"), gain=("gain", "mean"), gain_sd=("gain", "std"), seeds=("seed", "nunique")
    )

    def fmt(mean, sd, digits):
        if pd.isna(mean):
            return ""
        return f"{mean:.{digits}f}" + ("" if pd.isna(sd) else f" ± {sd:.{digits}f}")

    table = pd.DataFrame(index=pd.Index(order, name="case"))
    for m in METRICS:
        table[m] = [fmt(stats.loc[(c, m), "value"], stats.loc[(c, m), "value_sd"], 1) for c in order]
    for m in METRICS:
        table[f"G ({m})"] = [fmt(stats.loc[(c, m), "gain"], stats.loc[(c, m), "gain_sd"], 2) for c in order]
    table["seeds"] = [int(stats.loc[(c, METRICS[0]), "seeds"]) for c in order]
    return table


def mean_gain(results: list[dict], distance: str, case: str, metric: str = "top1") -> float:
    """Mean update gain of ``case`` over the main seeds (NaN where undefined in every seed)."""
    gains = [next(r.get(f"gain_{metric}") for r in res["rows"] if r["distance"] == distance and r["case"] == case)
             for res in main_results(results)]
    gains = [g for g in gains if g is not None]
    return float(np.mean(gains)) if gains else float("nan")
