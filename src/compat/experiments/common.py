"""What every table's experiment shares: the profile's old model, evaluating (query, gallery) cases with update gains and per-query
results, divergence checks, model provenance records, writing one result file, and measuring a gallery
upgrade's cost."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..artefacts import ModelSpec, SubsetSpec, read_intact_result
from ..errors import ConfigError, check_range
from ..evaluate import retrieval_metrics, update_gain
from ..provenance import data_record, environment
from ..store import Store, canonical, config_key
from ..upgrade_cost import measure_upgrade_cost

METRICS = ("top1", "top5", "mAP")


def old_model(profile, seed: int) -> ModelSpec:
    """The profile's old model of ``seed``: its architecture and old recipe on the protocol's old data."""
    protocol = profile.protocol
    return ModelSpec(
        data=profile.data, subset=SubsetSpec(protocol.scenario, protocol.old_fraction, "old"), model=profile.model, train=profile.old_train, seed=seed
    )


def collapsed(z: np.ndarray) -> str | None:
    """Why embeddings count as collapsed (a diverged model), or None: every row (nearly) the same vector."""
    spread = float(np.abs(z - z.mean(axis=0)).max())
    scale = float(np.abs(z).max())
    return f"constant embeddings (largest deviation from the mean {spread:.3g}, scale {scale:.3g})" if spread <= 1e-6 * max(scale, 1e-12) else None


def evaluate_cases(
    embeddings: Mapping[str, np.ndarray],
    labels: np.ndarray,
    cases: Sequence[tuple[str, str, str]],
    distances: Sequence[str],
    references: Callable[[str], tuple[str, str]],
    diverged: Mapping[str, str] | None = None,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Metrics of every (case, query, gallery) at every distance, and each case's per-query results.

    Each ``... new/old`` case also gets the update gain (BCT, Eq. 9) against the two cases
    ``references(case)`` names (old/old, independent new/new; None where they tie). A case with a diverged model (``diverged``: model -> why,
    plus any model whose embeddings collapsed) gets no numbers, only ``diverged``: such a run is
    reported, never tabulated.
    :return: rows, and per-query arrays keyed ``distance|case|rank`` and ``distance|case|ap``.
    """
    diverged = dict(diverged or {})
    for name, z in embeddings.items():
        why = collapsed(z)
        if why and name not in diverged:
            diverged[name] = why
    rows, per_query = [], {}
    for distance in distances:
        for case, query, gallery in cases:
            row = {"distance": distance, "case": case, "query": query, "gallery": gallery}
            bad = [f"{m}: {diverged[m]}" for m in dict.fromkeys((query, gallery)) if m in diverged]
            if bad:
                rows.append({**row, **{m: None for m in METRICS}, "diverged": "; ".join(bad)})
                continue
            metrics, pq = retrieval_metrics(embeddings[query], embeddings[gallery], labels, distance=distance, per_query=True)
            rows.append({**row, **{m: metrics[m] for m in METRICS}})
            per_query[f"{distance}|{case}|rank"] = pq["rank"].astype(np.int32)
            per_query[f"{distance}|{case}|ap"] = pq["ap"].astype(np.float32)
    ref = {(r["distance"], r["case"]): r for r in rows}
    for r in rows:
        if r["case"].endswith("new/old"):
            old_case, new_case = references(r["case"])
            old_old, new_new = ref[(r["distance"], old_case)], ref[(r["distance"], new_case)]
            for m in METRICS:
                known = None not in (r[m], old_old[m], new_new[m])
                r[f"gain_{m}"] = update_gain(r[m], old_old[m], new_new[m]) if known and new_new[m] != old_old[m] else None
    return rows, per_query


def diverged_models(store: Store, keys: Mapping[str, str]) -> dict[str, str]:
    """Model name -> why its training counts as diverged, for the stored models named in ``keys``."""
    out = {}
    for name, key in keys.items():
        why = store.model_meta(key)["log"].get("diverged")
        if why:
            out[name] = why
    return out


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
        "diverged": log.get("diverged"),
        "epochs": epochs,  # the per-epoch training log, so the result file carries it (the cache is not committed)
    }


def write_seed_result(
    store: Store,
    profile,
    seed: int,
    ablation: bool,
    key: str,
    rows: list[dict],
    models: dict,
    wall_seconds: dict,
    experiment: str,
    per_query: dict[str, np.ndarray] | None = None,
    **extra,
) -> dict:
    """Write (atomically) and return one seed's result file: metrics, models' provenance, full config, wall times,
    environment and data checksum; the per-query results go beside it (``KEY.npz``), written first."""
    if per_query:
        store.write_per_query(experiment, profile.name, key, per_query)
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
        "data": data_record(profile.data),
    }
    store.write_result(experiment, profile.name, key, payload)
    return payload


def check_cost_sizes(section: str, sizes: Sequence[int]) -> None:
    """Gallery sizes of an upgrade-cost measurement: at least one, each from 1 to 10 million."""
    if not sizes:
        raise ConfigError(f"{section}.cost_sizes must name at least one gallery size")
    for n in sizes:
        check_range(f"{section}.cost_sizes item", n, 1, 10_000_000)


def upgrade_cost(experiment: str, kind: str, profile, spec, sizes: Sequence[int], store: Store) -> dict:
    """Time and peak memory of upgrading N stored gallery rows with the transformation ``spec`` against
    re-embedding N images with its new model, for each N in ``sizes``; measured once, stored as a result file
    (``kind`` names the measurement in its key)."""
    key = config_key({"experiment": kind, "transformation": spec.key, "sizes": sizes})
    cached = read_intact_result(store, experiment, profile.name, key)
    if cached is not None:
        return cached
    started = time.perf_counter()
    rows = measure_upgrade_cost(spec, sizes, store)
    payload = {
        "experiment": experiment,
        "profile": profile.name,
        "kind": "cost",
        "key": key,
        "rows": rows,
        "transformation": {"key": spec.key, "spec": canonical(spec)},
        "config": canonical(profile),
        "wall_seconds": {"measure": time.perf_counter() - started},
        "environment": environment(),
    }
    store.write_result(experiment, profile.name, key, payload)
    return payload
