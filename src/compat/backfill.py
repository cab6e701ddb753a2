"""Partial backfill: retrieval accuracy against the share of the stored gallery re-embedded by the new model.

An upgrade need not be all or nothing. FastFill (Jaeckle et al., ICLR 2023) re-embeds the stored items one batch at
a time, the most doubtful first, and asks how fast accuracy climbs from the compatible upgrade's (nothing
re-embedded) to the full backfill's. Here, for each compared strategy, new queries search a gallery whose first
``fraction`` of items (in a given order) holds the new model's embeddings and the rest what the strategy left
stored, at the fractions of :data:`FRACTIONS`, in two orders:

* ``random``: a fixed random permutation (what a backfill without a score does);
* ``far from class mean``: the stored vectors farthest from their class's mean stored vector first, a cheap,
  label-based stand-in for FastFill's learned uncertainty of the transformation (which we do not train).

The measurement reads the models and galleries behind its strategies' chapter result files (seed
``experiment.seeds(profile)[0]``) from the store and writes one result file, ``results/backfill/PROFILE/KEY.json``,
keyed by those files' keys and its own settings: the compare page reads it and never measures.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .artefacts import read_intact_result
from .compare import comparison_entries
from .errors import ConfigError, check_choice
from .evaluate import retrieval_metrics
from .experiments import get_experiment
from .intervals import difference_interval, mean_interval, per_query_metric
from .provenance import environment
from .results import load_result_files
from .store import Store, canonical, config_key

NAME = "backfill"  # its folder under results/
ORDERS = ("random", "far from class mean")
FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
STRATEGIES = ("BCT", "FCT, side-information", "BiCT, every upgrade")  # comparison rows (their ``method``)


def backfill_order(stored: np.ndarray, labels: np.ndarray, order: str, distance: str = "l2", seed: int = 0) -> np.ndarray:
    """The gallery rows in the order they are re-embedded.

    :param order: ``random`` (a permutation fixed by ``seed``) or ``far from class mean`` (descending distance of
        each stored vector to the mean stored vector of its class; ``cosine`` measures both unit-normalized).
    """
    check_choice("backfill order", order, ORDERS)
    if order == "random":
        return np.random.default_rng(seed).permutation(len(stored))
    x = np.asarray(stored, dtype=np.float64)
    if distance == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    classes, index = np.unique(labels, return_inverse=True)
    means = np.zeros((len(classes), x.shape[1]))
    np.add.at(means, index, x)
    means /= np.bincount(index, minlength=len(classes))[:, None]
    far = np.linalg.norm(x - means[index], axis=1)
    return np.argsort(-far, kind="stable")


def mixed_gallery(stored: np.ndarray, new: np.ndarray, order: np.ndarray, fraction: float) -> np.ndarray:
    """The gallery after re-embedding the first ``round(fraction * N)`` rows of ``order``: those rows hold the new
    model's embeddings (``new``), the others what was stored."""
    if stored.shape != new.shape:
        raise ConfigError(f"stored and new embeddings must share one shape, got {stored.shape} and {new.shape}")
    gallery = np.array(stored, dtype=np.float32)
    rows = order[: round(fraction * len(stored))]
    gallery[rows] = new[rows]
    return gallery


def _sources(profile, strategies) -> list[tuple[str, object]]:
    """The comparison entries named ``strategies`` (each with its experiment's name), in the order given."""
    entries = {entry.method: (name, entry) for name, entry in comparison_entries()}
    return [entries[check_choice("backfill strategy", s, entries)] for s in strategies]


def measurement_key(profile, strategies=STRATEGIES) -> str:
    """The measurement's key: its strategies' chapter result files (the first seed's), fractions, orders, the
    distances and test-time flip of the protocol."""
    sources = {}
    for name, entry in _sources(profile, strategies):
        experiment = get_experiment(name)
        sources[entry.method] = experiment.result_key(profile, experiment.seeds(profile)[0])
    protocol = profile.protocol
    return config_key(
        {
            "experiment": NAME,
            "sources": sources,
            "fractions": FRACTIONS,
            "orders": ORDERS,
            "distances": protocol.distances,
            "test_flip": protocol.test_flip,
        }
    )


def read(profile, store: Store | None = None, strategies=STRATEGIES) -> dict | None:
    """The stored measurement of ``profile`` (None if it has not been made)."""
    return (store or Store()).read_result(NAME, profile.name, measurement_key(profile, strategies))


def measure(profile, store: Store | None = None, strategies=STRATEGIES) -> dict:
    """Measure (or read) the partial-backfill curves of ``strategies`` and store them as one result file.

    Needs each strategy's chapter result files (a missing one fails naming the command that makes it); their models
    and galleries are read from the store (a model missing from the cache is trained again, as any run does).
    """
    store = store or Store()
    key = measurement_key(profile, strategies)
    stored_file = read_intact_result(store, NAME, profile.name, key)  # a damaged file is measured again, never used
    if stored_file is not None:
        return stored_file
    store.check_result_writable()
    started = time.perf_counter()
    labels = profile.data.load().val.labels
    flip = profile.protocol.test_flip
    rows, differences, sources = [], [], {}
    for name, entry in _sources(profile, strategies):
        experiment = get_experiment(name)
        load_result_files(experiment, profile, store)  # the chapter's files exist: what is measured is what it shows
        seed = experiment.seeds(profile)[0]
        plan = experiment.plan(profile, seed)
        case = next(c for c in plan.cases if c.label == entry.case.format(last=len(profile.bict.generations)))
        query, stored = plan.embedding(case.query, store, flip), plan.embedding(case.gallery, store, flip)
        sources[entry.method] = {"experiment": name, "seed": seed, "case": case.label, "result": experiment.result_key(profile, seed)}
        for distance in profile.protocol.distances:
            top1 = {}
            for order in ORDERS:
                ranks = backfill_order(stored, labels, order, distance, seed)
                for fraction in FRACTIONS:
                    gallery = mixed_gallery(stored, query, ranks, fraction)
                    _, pq = retrieval_metrics(query, gallery, labels, distance=distance, topk=(1,), per_query=True, with_map=False)
                    top1[order, fraction] = per_query_metric(pq, "top1")
                    ci = mean_interval(top1[order, fraction])
                    rows.append(
                        {
                            "strategy": entry.method,
                            "distance": distance,
                            "order": order,
                            "fraction": fraction,
                            "top1": ci.value,
                            "top1 low": ci.low,
                            "top1 high": ci.high,
                        }
                    )
            for fraction in FRACTIONS[1:-1]:  # the ends re-embed nothing or everything: the orders tie there
                d = difference_interval(top1[ORDERS[1], fraction], top1[ORDERS[0], fraction])
                differences.append(
                    {"strategy": entry.method, "distance": distance, "fraction": fraction, "difference": d.value, "low": d.low, "high": d.high}
                )
    payload = {
        "experiment": NAME,
        "profile": profile.name,
        "kind": "measurement",
        "key": key,
        "rows": rows,
        "order_differences": differences,  # top-1 of "far from class mean" minus "random", paired over queries
        "sources": sources,
        "config": canonical(profile),
        "wall_seconds": {"measure": time.perf_counter() - started},
        "environment": environment(),
    }
    store.write_result(NAME, profile.name, key, payload)
    return payload


def curves(payload: dict, distance: str = "l2") -> pd.DataFrame:
    """The measurement's rows at one distance: strategy, order, fraction, top-1 and its 95 % interval."""
    frame = pd.DataFrame(payload["rows"])
    check_choice("distance", distance, frame["distance"].unique())
    return frame[frame["distance"] == distance].drop(columns="distance").reset_index(drop=True)


def reading(payload: dict, distance: str = "l2") -> str:
    """What the curves say, computed: each strategy's climb from nothing re-embedded to the full backfill, and at
    which fractions the far-from-class-mean order is above or below the random one (its paired 95 % interval
    excludes 0); elsewhere the two orders are inside each other's noise."""
    curve = curves(payload, distance)
    differences = pd.DataFrame(payload["order_differences"])
    differences = differences[differences["distance"] == distance]
    lines = []
    for strategy, rows in curve[curve["order"] == ORDERS[0]].groupby("strategy", sort=False):
        ends = rows.set_index("fraction")["top1"]
        d = differences[differences["strategy"] == strategy]
        above = [f"{100 * f:g} %" for f, low in zip(d["fraction"], d["low"]) if low > 0]
        below = [f"{100 * f:g} %" for f, high in zip(d["fraction"], d["high"]) if high < 0]
        sides = [f"{side} random at {', '.join(at)}" for side, at in (("above", above), ("below", below)) if at]
        where = f"{' and '.join(sides)} re-embedded" if sides else "inside the noise of random at every fraction"
        verdict = f"ordering by distance to the class mean is {where}"
        lines.append(f"* **{strategy}**: top-1 {ends.iloc[0]:.1f} % with nothing re-embedded, {ends.iloc[-1]:.1f} % with everything; {verdict}.")
    return "\n".join(lines)
