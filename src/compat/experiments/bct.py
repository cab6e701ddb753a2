"""The BCT table: old model on the first half of the classes, new models on all of them.

Shen et al., "Towards Backward-Compatible Representation Learning", CVPR 2020, under the
protocol of FCT's CIFAR-100 experiments (apple/ml-fct): rows old/old, independent new/new,
independent new/old, BCT new/old and new/new, L2 new/old and new/new; CMC top-1/5, mAP and
the update gain. Each seed trains its own old and new models; one seed adds the ablations
(influence weight 10, normalized embedding and classifier, and both together as in the BT-2 code).
"""

from __future__ import annotations

import time

import pandas as pd

from ..artefacts import MethodSpec, ModelSpec, SubsetSpec, get_embeddings
from ..config import Profile
from ..store import Store, config_key
from .common import (
    METRICS, evaluate_cases, long_table, main_results, mean_gain, model_record, run_seeds, summary_table, value,
    write_seed_result,
)

__all__ = ["run", "summary_table", "long_table", "criterion", "provenance_table", "ablation_table", "claims", "verdict"]

# (case, query model, gallery model); models by name in :func:`model_specs`
CASES = [
    ("old/old", "old", "old"),
    ("independent new/new", "independent", "independent"),
    ("independent new/old", "independent", "old"),
    ("BCT new/old", "bct", "old"),
    ("BCT new/new", "bct", "bct"),
    ("L2 new/old", "l2", "old"),
    ("L2 new/new", "l2", "l2"),
]
ABLATION_CASES = [
    ("BCT λ=10 new/old", "bct_heavy", "old"),
    ("BCT λ=10 new/new", "bct_heavy", "bct_heavy"),
    ("BCT normalized new/old", "bct_normalized", "old"),
    ("BCT normalized new/new", "bct_normalized", "bct_normalized"),
    ("BCT λ=10 normalized new/old", "bct_heavy_normalized", "old"),
    ("BCT λ=10 normalized new/new", "bct_heavy_normalized", "bct_heavy_normalized"),
]


def model_specs(profile: Profile, seed: int, ablation: bool = False) -> dict[str, ModelSpec]:
    """The models of one seed: old, independent new, BCT new, L2 new (+ the ablation models if asked)."""
    cfg = profile.bct
    common = {"data": profile.data, "model": profile.model, "seed": seed}
    old = ModelSpec(subset=SubsetSpec("extended-class", cfg.old_fraction, "old"), train=profile.old_train, **common)
    new = {"subset": SubsetSpec("extended-class", cfg.old_fraction, "new"), "train": profile.new_train, **common}
    specs = {
        "old": old,
        "independent": ModelSpec(**new),
        "bct": ModelSpec(**new, method=MethodSpec("bct", cfg.influence_weight), parent=old),
        "l2": ModelSpec(**new, method=MethodSpec("l2", cfg.l2_weight), parent=old),
    }
    if ablation:
        specs["bct_heavy"] = ModelSpec(**new, method=MethodSpec("bct", cfg.ablation_weight), parent=old)
        specs["bct_normalized"] = ModelSpec(**new, method=MethodSpec("bct", cfg.influence_weight, normalize=True), parent=old)
        specs["bct_heavy_normalized"] = ModelSpec(**new, method=MethodSpec("bct", cfg.ablation_weight, normalize=True), parent=old)
    return specs


def result_key(profile: Profile, seed: int, ablation: bool = False) -> str:
    """The key of one result file: every model's key plus the evaluation settings."""
    specs = model_specs(profile, seed, ablation)
    return config_key({"experiment": "bct", "models": {n: s.key for n, s in specs.items()}, "distances": profile.bct.distances})


def run_seed(profile: Profile, seed: int, store: Store, ablation: bool = False) -> dict:
    """Train (or load) the models of ``seed``, evaluate every case and write the result file.

    With ``ablation``, the file holds only the ablation cases (and the references they need).
    """
    key = result_key(profile, seed, ablation)
    cached = store.read_result("bct", profile.name, key)
    if cached is not None:
        return cached
    specs = model_specs(profile, seed, ablation)
    started = time.perf_counter()
    embeddings = {name: get_embeddings(spec, store) for name, spec in specs.items()}  # trains what is missing
    train_done = time.perf_counter()
    labels = specs["old"].data.load().val.labels
    cases = CASES + ABLATION_CASES if ablation else CASES
    rows = evaluate_cases(embeddings, labels, cases, profile.bct.distances, "old/old", "independent new/new")
    models = {name: model_record(store, spec.key) for name, spec in specs.items()}
    wall = {"train_and_embed": train_done - started, "evaluate": time.perf_counter() - train_done}
    return write_seed_result(store, profile, seed, ablation, key, rows, models, wall, experiment="bct")


def run(profile: Profile, store: Store | None = None) -> list[dict]:
    """Every seed of the profile's BCT table, then the one-seed ablation; loaded from result files where they exist."""
    cfg = profile.bct
    return run_seeds(run_seed, profile, store or Store(), cfg.ablation_seed if cfg.ablation else None)


def criterion(results: list[dict], case: str = "BCT new/old") -> pd.DataFrame:
    """Per seed and distance: does M(new, old) > M(old, old) hold (BCT's empirical compatibility criterion)?"""
    records = []
    for res in main_results(results):
        ref = {(r["distance"], r["case"]): r for r in res["rows"]}
        for distance in dict.fromkeys(r["distance"] for r in res["rows"]):
            for m in METRICS:
                new_old, old_old = ref[(distance, case)][m], ref[(distance, "old/old")][m]
                records.append({"seed": res["seed"], "distance": distance, "metric": m, "new/old": new_old,
                                "old/old": old_old, "holds": new_old > old_old})
    return pd.DataFrame.from_records(records)


def provenance_table(results: list[dict]) -> pd.DataFrame:
    """Per seed and model: training time, speed, precision, device and the revisions that made it."""
    records, seen = [], set()
    for res in results:
        for name, m in res["models"].items():
            if m["key"] in seen:  # the ablation file repeats its seed's shared models
                continue
            seen.add(m["key"])
            records.append({
                "seed": res["seed"], "model": name, "train min": m["train_seconds"] / 60, "img/s": m["images_per_s"],
                "train acc": m["final_train_acc"], "precision": m["precision"], "device": m["device"],
                "trained at": m["trained_at_revision"][:12], "result written at": res["environment"]["git_revision"][:12],
            })
    return pd.DataFrame.from_records(records).set_index(["seed", "model"])


def ablation_table(results: list[dict], distance: str = "l2") -> pd.DataFrame:
    """The ablation seed's BCT variants next to the default BCT model of the same seed (empty if not run)."""
    res = next((r for r in results if r["kind"] == "ablation"), None)
    if res is None:
        return pd.DataFrame()
    keep = [c for c, _, _ in ABLATION_CASES] + ["BCT new/old", "BCT new/new"]
    rows = [r for r in res["rows"] if r["distance"] == distance and r["case"] in keep]
    frame = pd.DataFrame(rows).set_index("case")
    return frame[list(METRICS) + [f"gain_{m}" for m in METRICS]].rename(columns={f"gain_{m}": f"G ({m})" for m in METRICS})


def claims(results: list[dict], distance: str = "l2") -> dict[str, bool]:
    """The paper's qualitative claims at top-1; a claim holds only if it holds in every seed."""
    main = main_results(results)

    def every(better: str, worse: str) -> bool:
        return all(value(r, distance, better) > value(r, distance, worse) for r in main)

    return {
        "compatibility is learned: BCT new/old above independent new/old": every("BCT new/old", "independent new/old"),
        "empirical criterion: BCT new/old above old/old": every("BCT new/old", "old/old"),
        "BCT beats the L2 baseline on new/old": every("BCT new/old", "L2 new/old"),
        "the upgrade still pays: BCT new/new above old/old": every("BCT new/new", "old/old"),
    }


def verdict(results: list[dict]) -> str:
    """Markdown: the claims with what our numbers say, and a verdict (reproduced / partially / not)."""
    lines = []
    verdicts = {}
    main = main_results(results)
    for distance in dict.fromkeys(r["distance"] for r in main[0]["rows"]):
        checked = claims(results, distance)
        core = list(checked.values())
        verdicts[distance] = "reproduced" if all(core) else ("partially reproduced" if core[0] else "not reproduced")
        lines.append(f"**{distance} distance: {verdicts[distance]}** (top-1, each claim checked in every one of {len(main)} seeds)")
        lines += [f"- {'holds' if ok else 'does not hold'}: {claim}" for claim, ok in checked.items()]
        gain = mean_gain(results, distance, "BCT new/old")
        lines.append(f"- update gain of BCT (top-1): {gain:.2f} (0 = no better than the old model, 1 = as good as backfilling)")
        ablation = next((r for r in results if r["kind"] == "ablation"), None)
        if ablation is not None:
            variants = [c for c, _, gallery in ABLATION_CASES if gallery == "old"]
            holding = [c.removesuffix(" new/old") for c in variants if value(ablation, distance, c) > value(ablation, distance, "old/old")]
            lines.append(f"- one-seed ablation (seed {ablation['seed']}): the empirical criterion holds for "
                         + (", ".join(holding) if holding else "none of the variants"))
        lines.append("")
    return "\n".join(lines)
