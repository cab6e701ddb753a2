"""The FCT tables: forward-compatible upgrades of a stored gallery through a learned transformation.

Ramanujan et al., "Forward Compatible Training for Large-Scale Embedding Retrieval Systems",
CVPR 2022, under the protocol of its CIFAR-100 experiments (apple/ml-fct). The old model and the
(independently trained) new model are the BCT table's own artefacts, shared through the store;
this experiment adds a SimCLR side-information model trained on the old training data and the
transformation h, trained on the new training set's stored embeddings. Rows: old/old, new/new,
BCT new/old, FCT new/old without and with side-information; one seed adds the ablations
(side-information size, BatchNorm freezing); the upgrade cost is measured once.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from ..artefacts import MethodSpec, ModelSpec, SubsetSpec, TransformationSpec, get_embeddings, get_upgraded_gallery
from ..config import Profile
from ..provenance import environment
from ..store import Store, canonical, config_key
from . import bct
from .common import (
    METRICS, evaluate_cases, long_table, main_results, mean_gain, model_record, run_seeds, summary_table, value,
    write_seed_result,
)

__all__ = ["run", "summary_table", "long_table", "ablation_table", "examples", "upgrade_cost", "claims", "verdict"]

NO_SIDE = "FCT (no side-info) new/old"
SIDE = "FCT (side-info) new/old"
# (case, query, gallery); galleries named h_* are the old gallery upgraded by a transformation
CASES = [
    ("old/old", "old", "old"),
    ("new/new", "new", "new"),
    ("BCT new/old", "bct", "old"),
    (NO_SIDE, "new", "h_none"),
    (SIDE, "new", "h_side"),
]
PICTURE_CASES = ["old/old", SIDE, "new/new"]


def side_spec(profile: Profile, seed: int, dim: int) -> ModelSpec:
    """The SimCLR side-information model: the old model's backbone, a ``dim``-d output, the old training data."""
    return ModelSpec(
        data=profile.data,
        subset=SubsetSpec("extended-class", profile.bct.old_fraction, "old"),
        model=dataclasses.replace(profile.model, embedding_dim=dim),
        train=profile.fct.side_train,
        seed=seed,
        method=MethodSpec("simclr", temperature=profile.fct.temperature),
    )


def transformation_spec(profile: Profile, seed: int, side_dim: int, freeze_bn: bool = True) -> TransformationSpec:
    """h from the BCT table's old model to its independent new model, with ``side_dim``-d side-information (0: none)."""
    models = bct.model_specs(profile, seed)
    config = dataclasses.replace(profile.fct.transformation, freeze_bn=freeze_bn)
    side = side_spec(profile, seed, side_dim) if side_dim else None
    return TransformationSpec(old=models["old"], new=models["independent"], side=side, config=config, seed=seed)


def ablation_variants(profile: Profile) -> dict[str, tuple[int, bool]]:
    """Ablation case name -> (side-information size, BatchNorm frozen)."""
    fct = profile.fct
    variants = {f"FCT side-info {d} new/old": (d, True) for d in sorted({0, *fct.ablation_side_dims, fct.side_dim})}
    variants[f"FCT side-info {fct.side_dim}, BatchNorm not frozen new/old"] = (fct.side_dim, False)
    return variants


def _specs(profile: Profile, seed: int, ablation: bool) -> tuple[dict[str, ModelSpec], dict[str, TransformationSpec], list]:
    """Models, transformations and cases of one result file."""
    models = bct.model_specs(profile, seed)
    specs = {"old": models["old"], "new": models["independent"], "bct": models["bct"]}
    if not ablation:
        return specs, {"h_none": transformation_spec(profile, seed, 0), "h_side": transformation_spec(profile, seed, profile.fct.side_dim)}, CASES
    transforms, cases = {}, CASES[:2]
    for i, (case, (dim, freeze)) in enumerate(ablation_variants(profile).items()):
        transforms[f"h_{i}"] = transformation_spec(profile, seed, dim, freeze)
        cases.append((case, "new", f"h_{i}"))
    return specs, transforms, cases


def result_key(profile: Profile, seed: int, ablation: bool = False) -> str:
    """The key of one result file: every model's and transformation's key plus the evaluation settings."""
    specs, transforms, _ = _specs(profile, seed, ablation)
    return config_key({
        "experiment": "fct",
        "models": {n: s.key for n, s in specs.items()},
        "transformations": {n: t.key for n, t in transforms.items()},
        "distances": profile.bct.distances,
        "picture_queries": profile.fct.picture_queries,
    })


def _picture(embeddings: dict[str, np.ndarray], labels: np.ndarray, cases: list, count: int, seed: int) -> dict:
    """Top-5 gallery indices (L2, leave-one-out) of ``count`` val queries from distinct classes, per picture case."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(np.unique(labels), size=min(count, len(np.unique(labels))), replace=False)
    queries = [int(rng.choice(np.flatnonzero(labels == c))) for c in classes]
    top = {}
    by_case = {case: (query, gallery) for case, query, gallery in cases}
    for case in PICTURE_CASES:
        query, gallery = by_case[case]
        q = embeddings[query][queries]
        d2 = ((q[:, None, :] - embeddings[gallery][None, :, :]) ** 2).sum(-1)  # K x N, K small
        d2[np.arange(len(queries)), queries] = np.inf  # leave-one-out
        top[case] = np.argsort(d2, axis=1, kind="stable")[:, :5].tolist()
    return {"queries": queries, "top5": top}


def run_seed(profile: Profile, seed: int, store: Store, ablation: bool = False) -> dict:
    """Train (or load) the side-information models and transformations of ``seed``, evaluate, write the result file."""
    key = result_key(profile, seed, ablation)
    cached = store.read_result("fct", profile.name, key)
    if cached is not None:
        return cached
    specs, transforms, cases = _specs(profile, seed, ablation)
    started = time.perf_counter()
    embeddings = {name: get_embeddings(spec, store) for name, spec in specs.items()}  # the BCT table's models
    embeddings.update({name: get_upgraded_gallery(t, store) for name, t in transforms.items()})  # trains what is missing
    train_done = time.perf_counter()
    labels = specs["old"].data.load().val.labels
    rows = evaluate_cases(embeddings, labels, cases, profile.bct.distances, "old/old", "new/new")
    models = {name: model_record(store, spec.key) for name, spec in specs.items()}
    for name, t in transforms.items():
        if t.side is not None:
            models[f"side-info {t.side_dim()}-d"] = model_record(store, t.side.key)
        models[name] = model_record(store, t.key)
    wall = {"train_and_embed": train_done - started, "evaluate": time.perf_counter() - train_done}
    return write_seed_result(
        store, profile, seed, ablation, key, rows, models, wall, experiment="fct",
        transformations={n: {"side_dim": t.side_dim() if t.side else 0, "freeze_bn": t.config.freeze_bn} for n, t in transforms.items()},
        picture=None if ablation else _picture(embeddings, labels, cases, profile.fct.picture_queries, seed),
    )


def upgrade_cost(profile: Profile, store: Store | None = None) -> dict:
    """Time and peak memory of upgrading N stored gallery rows with h against re-embedding N images with
    the new model, for each N in the profile's ``cost_sizes``; measured once, stored as a result file."""
    from ..bench import measure_upgrade_cost

    store = store or Store()
    spec = transformation_spec(profile, profile.fct.ablation_seed, profile.fct.side_dim)
    key = config_key({"experiment": "fct-cost", "transformation": spec.key, "sizes": profile.fct.cost_sizes})
    cached = store.read_result("fct", profile.name, key)
    if cached is not None:
        return cached
    started = time.perf_counter()
    rows = measure_upgrade_cost(spec, profile.fct.cost_sizes, store)
    payload = {
        "experiment": "fct",
        "profile": profile.name,
        "kind": "cost",
        "key": key,
        "rows": rows,
        "transformation": {"key": spec.key, "spec": canonical(spec)},
        "config": canonical(profile),
        "wall_seconds": {"measure": time.perf_counter() - started},
        "environment": environment(),
    }
    store.write_result("fct", profile.name, key, payload)
    return payload


def run(profile: Profile, store: Store | None = None) -> list[dict]:
    """Every seed of the FCT table (the BCT table's seeds), then the one-seed ablation; loaded where result files exist.

    The upgrade cost is a separate result (:func:`upgrade_cost`), measured after the tables.
    """
    cfg = profile.fct
    return run_seeds(run_seed, profile, store or Store(), cfg.ablation_seed if cfg.ablation else None)


def ablation_table(results: list[dict], distance: str = "l2") -> pd.DataFrame:
    """The ablation seed's FCT variants (side-information size, BatchNorm freezing) with gains; empty if not run."""
    res = next((r for r in results if r["kind"] == "ablation"), None)
    if res is None:
        return pd.DataFrame()
    frame = pd.DataFrame([r for r in res["rows"] if r["distance"] == distance]).set_index("case")
    return frame[list(METRICS) + [f"gain_{m}" for m in METRICS]].rename(columns={f"gain_{m}": f"G ({m})" for m in METRICS})


def examples(results: list[dict]) -> dict:
    """The retrieval picture's queries and top-5 lists of the first main seed."""
    return main_results(results)[0]["picture"]


def provenance_table(results: list[dict]) -> pd.DataFrame:
    """Per seed: the side-information models and transformations this chapter trained (the rest is the BCT table's)."""
    records, seen = [], set()
    for res in results:
        for name, m in res["models"].items():
            if name in ("old", "new", "bct") or m["key"] in seen:
                continue
            seen.add(m["key"])
            t = res["transformations"].get(name)
            label = name if t is None else f"h (side-info {t['side_dim']}{'' if t['freeze_bn'] else ', BN not frozen'})"
            records.append({
                "seed": res["seed"], "artefact": label, "train min": m["train_seconds"] / 60,
                "img/s": m["images_per_s"], "final MSE": m["final_mse"], "precision": m["precision"],
                "trained at": m["trained_at_revision"][:12], "result written at": res["environment"]["git_revision"][:12],
            })
    return pd.DataFrame.from_records(records).set_index(["seed", "artefact"])


def claims(results: list[dict], distance: str = "l2") -> dict[str, bool]:
    """FCT's qualitative claims at top-1; a claim holds only if it holds in every seed."""
    main = main_results(results)

    def every(better: str, worse: str) -> bool:
        return all(value(r, distance, better) > value(r, distance, worse) for r in main)

    return {
        "the transformed gallery beats the old one: FCT new/old above old/old": every(SIDE, "old/old"),
        "FCT beats BCT: FCT new/old above BCT new/old": every(SIDE, "BCT new/old"),
        "side-information helps: FCT with side-info above FCT without": every(SIDE, NO_SIDE),
        "backfilling is still the ceiling: new/new above FCT new/old": every("new/new", SIDE),
    }


def published_gains(metric: str = "top1") -> pd.DataFrame:
    """Update gains of the FCT rows in the published tables that report both variants (FastFill README)."""
    from ..published import FASTFILL_CIFAR100, FASTFILL_IMAGENET, reference_table

    return pd.DataFrame({
        name: reference_table(ref)[f"G ({metric})"][[NO_SIDE, SIDE]]
        for name, ref in (("CIFAR-100", FASTFILL_CIFAR100), ("ImageNet-1k", FASTFILL_IMAGENET))
    })


def verdict(results: list[dict], distance: str = "l2") -> str:
    """Markdown: the claims, our gains against the published ones, and a verdict: reproduced (orderings hold
    and gains reach the published range), partially (orderings hold, gains below it, or some ordering fails
    while the transformed gallery still beats the old one), not reproduced."""
    checked = claims(results, distance)
    ours = {case: mean_gain(results, distance, case) for case in (NO_SIDE, SIDE)}
    published = published_gains()
    reaches = all(ours[case] >= published.loc[case].min() for case in ours)
    core = list(checked.values())
    word = "reproduced" if all(core) and reaches else ("partially reproduced" if core[0] else "not reproduced")
    lines = [f"**{distance} distance: {word}** (top-1, each claim checked in every one of {len(main_results(results))} seeds)"]
    lines += [f"- {'holds' if ok else 'does not hold'}: {claim}" for claim, ok in checked.items()]
    for case in ours:
        low, high = published.loc[case].min(), published.loc[case].max()
        lines.append(f"- update gain of {case.removesuffix(' new/old')} (top-1): {ours[case]:.2f} here; "
                     f"{low:.2f}-{high:.2f} in the published tables ({'reaches' if ours[case] >= low else 'below'} that range)")
    lines.append(f"- update gain of BCT (top-1): {mean_gain(results, distance, 'BCT new/old'):.2f} here")
    return "\n".join(lines)
