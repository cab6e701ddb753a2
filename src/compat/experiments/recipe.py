"""The recipe study: which changes to the old model's recipe buy accuracy at a fixed training budget.

Each candidate is the incumbent recipe (the ``cpu`` profile's old model: airnet width 32, EMA of the
weights) with one idea of airbench changed (Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single
GPU", arXiv 2404.00498, and its code `KellerJordan/cifar10-airbench`); each trains the old model (the
first half of the classes) at every seed of the study and, after every epoch, embeds the val set and
measures leave-one-out top-1 (raw L2), plainly and flip-averaged, for the weights it would keep and,
where a weight average is kept, for the raw weights too (so one run answers "does the EMA help").
The final model is evaluated with per-query results, so that a candidate's difference from the
incumbent gets a paired interval over val queries and seeds.

The decision follows :func:`compat.experiments.recipe_reading.decide`, a rule fixed before the runs and
stated in the chapter; the study's other readings are there too.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import faiss
import numpy as np
import pandas as pd

from ..artefacts import ModelSpec, SubsetSpec, get_embeddings, get_model, read_intact_result
from ..divergence import TrainingDiverged
from ..errors import ConfigError, check_choice, check_seeds
from ..evaluate import retrieval_metrics
from ..store import Store, config_key
from ..train import TrainConfig, embed
from .base import Experiment, Job, register_experiment
from .common import model_record, write_seed_result

STUDY_VERSION = 2  # in every result key: 2 = per-query results, raw-weight probes, one-pixel test-time shifts
INCUMBENT = "incumbent (EMA)"
_W32 = {"backbone": "airnet", "width": 32}
_EMA = {"ema_decay": 0.999}

# candidate name -> its changes to the study's base model and recipe, the idea in a few words, and whether the
# per-epoch probe also measures the raw weights beside the averaged ones (the two weight-averaging candidates)
CANDIDATES: dict[str, dict] = {
    INCUMBENT: {"model": _W32, "train": _EMA, "idea": "the cpu profile's old model: airnet w32, EMA 0.999", "probe_raw": True},
    "label smoothing 0.2": {"model": _W32, "train": {**_EMA, "label_smoothing": 0.2}, "idea": "airbench's label smoothing (ours: 0.1)"},
    "lookahead": {
        "model": _W32,
        "train": {"lookahead_every": 5},
        "idea": "airbench's lookahead every 5 steps, written back into the weights (replaces the EMA)",
        "probe_raw": True,
    },
    "BatchNorm: fixed scales, 64x bias lr": {
        "model": _W32,
        "train": {**_EMA, "bn_frozen_scale": True, "bn_bias_lr": 64.0},
        "idea": "airbench's BatchNorm: scales fixed at 1, biases at 64 times the lr",
    },
    "whitening bias + GELU": {
        "model": {**_W32, "whiten_bias": True},
        "train": _EMA,
        "idea": "a trained bias and GELU after the frozen whitening filters",
    },
    "translate 2 (reflect), alternating flips": {
        "model": _W32,
        "train": {**_EMA, "crop_padding": 2, "crop_fill": "reflect", "flip_mode": "alternating"},
        "idea": "airbench's augmentation: shifts of up to 2 px with reflected borders, each image flipped every other epoch",
    },
    "batch 512, lr 0.4": {
        "model": _W32,
        "train": {**_EMA, "batch_size": 512, "lr": 0.4},
        "idea": "twice the batch at twice the lr (per-epoch weight decay unchanged)",
    },
    "8 epochs": {"model": _W32, "train": {**_EMA, "epochs": 8}, "idea": "a third more training (over the 6-epoch budget)"},
}
# test-time embeddings of every final model: name -> options of get_embeddings
TEST_TIME = {"plain": {}, "flip-averaged": {"flip": True}, "flip + 1-px shifts": {"flip": True, "translate": True}}
DECIDING = "flip-averaged"  # the test-time embedding every training candidate is judged with (the profile's test_flip)


@dataclass(frozen=True)
class RecipeConfig:
    """The recipe study: candidate old-model recipes at a fixed budget.

    :param candidates: names in :data:`CANDIDATES` (the incumbent is always run).
    :param combine: candidates whose changes are also run together as one more candidate (the study's
        second stage: the first stage's winners, by :func:`decide`); empty for none.
    :param base_train: the recipe every candidate changes (fixed here, not the profile's, so that choosing
        a winner for the profile leaves the study's own models and results valid).
    :param seeds: the study's seeds (its first is seed 0 of the chapters: the incumbent's model is theirs).
    """

    candidates: tuple[str, ...] = tuple(CANDIDATES)
    combine: tuple[str, ...] = ()
    base_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, batch_size=256, lr=0.2, warmup_epochs=0.5))
    seeds: tuple[int, ...] = (0, 1)

    def __post_init__(self) -> None:
        if not self.candidates or len(set(self.candidates)) != len(self.candidates):
            raise ConfigError(f"recipe.candidates must be distinct and non-empty, got {self.candidates!r}")
        for name in (*self.candidates, *self.combine):
            check_choice("recipe.candidates item", name, CANDIDATES)
        if self.combine:
            if len(self.combine) < 2 or len(set(self.combine)) != len(self.combine) or INCUMBENT in self.combine:
                raise ConfigError(f"recipe.combine names two or more distinct candidates other than the incumbent, got {self.combine!r}")
            combined_changes(self.combine)  # conflicting changes fail here
        check_seeds("recipe.seeds", self.seeds)

    @property
    def names(self) -> tuple[str, ...]:
        """Every candidate the study runs: the incumbent first, then the others, then the combination."""
        combination = (combination_name(self.combine),) if self.combine else ()
        return (INCUMBENT, *(c for c in self.candidates if c != INCUMBENT), *combination)


def combination_name(names: tuple[str, ...]) -> str:
    return " + ".join(names)


def combined_changes(names: tuple[str, ...]) -> dict:
    """The union of the named candidates' changes; two that set one field to different values are refused."""
    merged: dict = {"model": {}, "train": {}}
    for name in names:
        for part in ("model", "train"):
            for k, v in CANDIDATES[name][part].items():
                if k in merged[part] and merged[part][k] != v:
                    raise ConfigError(f"recipe.combine: {name!r} sets {part}.{k}={v!r}, another candidate {merged[part][k]!r}")
                merged[part][k] = v
    if merged["train"].get("lookahead_every"):  # lookahead replaces the EMA
        merged["train"].pop("ema_decay", None)
    return merged


def changes(profile, name: str) -> dict:
    """The model and recipe changes of candidate ``name`` (a single candidate, or the profile's combination)."""
    if name in CANDIDATES:
        return {"model": CANDIDATES[name]["model"], "train": CANDIDATES[name]["train"]}
    if profile.recipe.combine and name == combination_name(profile.recipe.combine):
        return combined_changes(profile.recipe.combine)
    raise ConfigError(f"unknown recipe candidate {name!r}; allowed: {', '.join(profile.recipe.names)}")


def candidate_spec(profile, name: str, seed: int) -> ModelSpec:
    """The old model of candidate ``name``: the profile's old model with the candidate's changes."""
    change = changes(profile, name)
    return ModelSpec(
        data=profile.data,
        subset=SubsetSpec(profile.protocol.scenario, profile.protocol.old_fraction, "old"),
        model=dataclasses.replace(profile.model, **change["model"]),
        train=dataclasses.replace(profile.recipe.base_train, **change["train"]),
        seed=seed,
    )


def _top1(z: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out top-1 (raw L2) from a faiss top-2 search: the nearest item other than the query itself."""
    index = faiss.IndexFlatL2(z.shape[1])
    index.add(z)
    _, nn = index.search(z, 2)
    other = np.where(nn[:, 0] == np.arange(len(z)), nn[:, 1], nn[:, 0])
    return 100.0 * float((labels[other] == labels).mean())


def _val_probe(val_images: np.ndarray, val_labels: np.ndarray, last_epoch: int, keep: dict, with_raw: bool):
    """Per-epoch measurement: val top-1 of the kept weights and (``with_raw``, where a weight average is kept) of
    the raw weights, plain and flip-averaged, and its own time; the raw weights' last flip-averaged embeddings go
    to ``keep``."""

    def probe(model, epoch: int, raw=None) -> dict:
        started = time.perf_counter()
        out = {}
        for prefix, weights in (("val", model), ("raw", raw if with_raw else None)):
            if weights is None:
                continue
            plain, averaged = embed(weights, val_images), embed(weights, val_images, flip=True)
            out[f"{prefix}_top1"], out[f"{prefix}_top1_flip"] = _top1(plain, val_labels), _top1(averaged, val_labels)
            if prefix == "raw" and epoch == last_epoch:
                keep["raw weights, flip-averaged"] = averaged
        out["probe_seconds"] = time.perf_counter() - started
        return out

    return probe


def result_key(profile, name: str, seed: int) -> str:
    return config_key({"experiment": "recipe", "study": STUDY_VERSION, "model": candidate_spec(profile, name, seed).key})


def run_candidate(profile, name: str, seed: int, store: Store) -> dict:
    """Train (or load) candidate ``name`` with the per-epoch probe; final metrics per test-time embedding with
    per-query results; one result file."""
    spec = candidate_spec(profile, name, seed)
    key = result_key(profile, name, seed)
    cached = read_intact_result(store, "recipe", profile.name, key)
    if cached is not None:
        return cached
    store.check_result_writable()
    data = spec.data.load()
    started = time.perf_counter()
    raw: dict[str, np.ndarray] = {}
    extra = {"experiment": "recipe", "candidate": name, "change": changes(profile, name)}
    try:
        with_raw = CANDIDATES.get(name, {}).get("probe_raw", False)
        get_model(spec, store, on_epoch=_val_probe(data.val.images, data.val.labels, spec.train.epochs, raw, with_raw))
    except TrainingDiverged as exc:  # a finding of the study, reported as such
        return write_seed_result(
            store, profile, seed, False, key, [], {}, {"train": time.perf_counter() - started}, curve=[], diverged=str(exc), **extra
        )
    train_done = time.perf_counter()
    embeddings = {case: get_embeddings(spec, store, **options) for case, options in TEST_TIME.items()}
    embeddings.update(raw)  # empty when the model was loaded rather than trained here, or keeps no average
    rows, per_query = [], {}
    for case, z in embeddings.items():
        metrics, pq = retrieval_metrics(z, z, data.val.labels, per_query=True)
        rows.append({"distance": "l2", "case": case, "query": "old", "gallery": "old", **{m: metrics[m] for m in ("top1", "top5", "mAP")}})
        per_query[f"l2|{case}|rank"], per_query[f"l2|{case}|ap"] = pq["rank"].astype(np.int32), pq["ap"].astype(np.float32)
    wall = {"train_and_embed": train_done - started, "evaluate": time.perf_counter() - train_done}
    return write_seed_result(
        store,
        profile,
        seed,
        False,
        key,
        rows,
        {"old": model_record(store, spec.key)},
        wall,
        per_query=per_query,
        curve=store.model_meta(spec.key)["log"]["epochs"],
        **extra,
    )


@register_experiment("recipe")
class Recipe(Experiment):
    config_class = RecipeConfig
    tabulates = False  # a study of recipes, not a table of methods
    profile_configs = {
        # every candidate at 2 seeds; the second stage combines the first stage's winners by decide()'s rule 2
        "cpu": RecipeConfig(combine=("whitening bias + GELU", "translate 2 (reflect), alternating flips"), seeds=(0, 1)),
        "smoke": RecipeConfig(
            candidates=(INCUMBENT, "lookahead", "translate 2 (reflect), alternating flips"),
            base_train=TrainConfig(epochs=2, batch_size=64, lr=0.1, warmup_epochs=1),
        ),
    }

    def jobs(self, profile) -> list[Job]:
        """Every candidate of the profile's study at every study seed: one model and one result file each."""
        return [
            Job(
                self.name,
                f"{name}, seed {seed}",
                result_key(profile, name, seed),
                (candidate_spec(profile, name, seed),),
                (),
                lambda store, name=name, seed=seed: run_candidate(profile, name, seed, store),
            )
            for name in profile.recipe.names
            for seed in profile.recipe.seeds
        ]

    def summary_table(self, results: list[dict], distance: str = "l2", store=None) -> pd.DataFrame:
        return final_table(results)

    def point_table(self, results: list[dict], distance: str = "l2") -> pd.DataFrame:
        return final_table(results)


def final_table(results: list[dict]) -> pd.DataFrame:
    """Per candidate and seed: training minutes, images/s and the final metrics of each test-time embedding."""
    records = []
    for res in results:
        if res.get("diverged"):
            records.append({"candidate": res["candidate"], "seed": res["seed"], "embedding": "diverged"})
            continue
        m = res["models"]["old"]
        for row in res["rows"]:
            records.append(
                {
                    "candidate": res["candidate"],
                    "seed": res["seed"],
                    "embedding": row["case"],
                    "train min": m["train_seconds"] / 60,
                    "img/s": round(m["images_per_s"]),
                    "top-1 (%)": row["top1"],
                    "top-5 (%)": row["top5"],
                    "mAP (%)": row["mAP"],
                }
            )
    return pd.DataFrame.from_records(records).set_index(["candidate", "seed", "embedding"])
