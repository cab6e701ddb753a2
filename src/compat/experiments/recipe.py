"""The recipe study: time to accuracy of candidate old-model recipes on 2 CPU cores.

Each candidate trains the old model (the first half of the classes) and, after every epoch,
embeds the val set and measures retrieval top-1 (raw L2, leave-one-out), with and without
flip-averaged embeddings; the wall time of training alone is the x-axis. The ideas tried come
from airbench (Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv 2404.00498):
a frozen patch-whitening first layer, identity initialization, few wide layers, an EMA of
the weights, flip test-time augmentation. The candidate the profile names as its recipe is
the chapters' old model itself, shared through the store.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import faiss
import numpy as np
import pandas as pd

from ..artefacts import ModelSpec, SubsetSpec, get_embeddings, get_model, read_intact_result
from ..errors import ConfigError, check_choice, check_range
from ..evaluate import retrieval_metrics
from ..store import Store, config_key
from ..train import TrainConfig, TrainingDiverged, embed
from .base import Experiment, register_experiment
from .common import model_record, write_seed_result

# candidate name -> changes to the profile's model and old-model recipe
CANDIDATES: dict[str, dict[str, dict]] = {
    "airnet w32": {"model": {"backbone": "airnet", "width": 32}, "train": {}},
    "airnet w32 + EMA": {"model": {"backbone": "airnet", "width": 32}, "train": {"ema_decay": 0.999}},
    "airnet w48": {"model": {"backbone": "airnet", "width": 48}, "train": {}},
    "airnet w32, lr 0.4, smoothing 0.2": {"model": {"backbone": "airnet", "width": 32}, "train": {"lr": 0.4, "label_smoothing": 0.2}},
    "ResNet-20 w16": {"model": {"backbone": "resnet20", "width": 16}, "train": {}},
}


@dataclass(frozen=True)
class RecipeConfig:
    """The recipe study: candidate old-model recipes, time to accuracy.

    :param candidates: names in :data:`CANDIDATES`.
    :param base_train: the recipe every candidate changes (fixed here, not the profile's, so that choosing
        a winner for the profile leaves the study's own models and results valid).
    :param seed: the study's one seed (seed 0 of the chapters: the chosen candidate's model is shared).
    """

    candidates: tuple[str, ...] = tuple(CANDIDATES)
    base_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, batch_size=256, lr=0.2, warmup_epochs=0.5))
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.candidates or len(set(self.candidates)) != len(self.candidates):
            raise ConfigError(f"recipe.candidates must be distinct and non-empty, got {self.candidates!r}")
        for name in self.candidates:
            check_choice("recipe.candidates item", name, CANDIDATES)
        check_range("recipe.seed", self.seed, 0, 2**31 - 1)


def candidate_spec(profile, name: str, seed: int) -> ModelSpec:
    """The old model of candidate ``name``: the profile's old model with the candidate's changes."""
    check_choice("recipe candidate", name, CANDIDATES)
    change = CANDIDATES[name]
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


def _val_probe(val_images: np.ndarray, val_labels: np.ndarray):
    """Per-epoch measurement: val top-1 of the plain and of the flip-averaged embedding, and its own time."""

    def probe(model, epoch: int) -> dict:
        started = time.perf_counter()
        plain = embed(model, val_images)
        averaged = embed(model, val_images, flip=True)
        return {
            "val_top1": _top1(plain, val_labels),
            "val_top1_flip": _top1(averaged, val_labels),
            "probe_seconds": time.perf_counter() - started,
        }

    return probe


def run_candidate(profile, name: str, seed: int, store: Store) -> dict:
    """Train (or load) candidate ``name`` with the per-epoch probe; final full metrics; one result file."""
    spec = candidate_spec(profile, name, seed)
    key = config_key({"experiment": "recipe", "model": spec.key})
    cached = read_intact_result(store, "recipe", profile.name, key)
    if cached is not None:
        return cached
    data = spec.data.load()
    started = time.perf_counter()
    try:
        get_model(spec, store, on_epoch=_val_probe(data.val.images, data.val.labels))
    except TrainingDiverged as exc:  # a finding of the study, reported as such
        return write_seed_result(store, profile, seed, False, key, [], {}, {"train": time.perf_counter() - started},
                                 experiment="recipe", candidate=name, change=CANDIDATES[name], curve=[], diverged=str(exc))
    train_done = time.perf_counter()
    z = get_embeddings(spec, store)
    rows = [{"distance": "l2", "case": "old/old", "query": "old", "gallery": "old",
             **{m: v for m, v in retrieval_metrics(z, z, data.val.labels).items() if m in ("top1", "top5", "mAP")}}]
    zf = get_embeddings(spec, store, flip=True)
    rows.append({"distance": "l2", "case": "old/old, flip-averaged", "query": "old", "gallery": "old",
                 **{m: v for m, v in retrieval_metrics(zf, zf, data.val.labels).items() if m in ("top1", "top5", "mAP")}})
    meta = store.model_meta(spec.key)
    wall = {"train_and_embed": train_done - started, "evaluate": time.perf_counter() - train_done}
    return write_seed_result(
        store, profile, seed, False, key, rows, {"old": model_record(store, spec.key)}, wall, experiment="recipe",
        candidate=name, change=CANDIDATES[name], curve=meta["log"]["epochs"],
    )


@register_experiment("recipe")
class Recipe(Experiment):
    config_class = RecipeConfig
    tabulates = False  # a study of recipes, not a table of methods
    profile_configs = {
        "cpu": RecipeConfig(candidates=("airnet w32", "airnet w32 + EMA", "ResNet-20 w16")),  # the candidates run so far
        "smoke": RecipeConfig(candidates=("airnet w32", "ResNet-20 w16"), base_train=TrainConfig(epochs=2, batch_size=64, lr=0.1, warmup_epochs=1)),
    }

    def run(self, profile, store: Store | None = None) -> list[dict]:
        """Every candidate of the profile's study, seed ``recipe.seed``; loaded where result files exist."""
        store = store or Store()
        return [run_candidate(profile, name, profile.recipe.seed, store) for name in profile.recipe.candidates]

    def summary_table(self, results: list[dict], distance: str = "l2", store=None) -> pd.DataFrame:
        return final_table(results)


def curves(results: list[dict]) -> pd.DataFrame:
    """One row per (candidate, epoch): cumulative training minutes and val top-1, plain and flip-averaged."""
    records = []
    for res in results:
        minutes = 0.0
        for e in res["curve"]:  # empty for a diverged candidate
            minutes += e["seconds"] / 60
            for flip in (False, True):
                records.append({"candidate": res["candidate"], "epoch": e["epoch"], "train minutes": minutes,
                                "embedding": "flip-averaged" if flip else "plain",
                                "top-1 (%)": e["val_top1_flip" if flip else "val_top1"]})
    return pd.DataFrame.from_records(records)


def final_table(results: list[dict]) -> pd.DataFrame:
    """Per candidate: training minutes, images/s and the final old/old metrics, plain and flip-averaged."""
    records = []
    for res in results:
        if res.get("diverged"):
            records.append({"candidate": res["candidate"], "embedding": "diverged"})
            continue
        m = res["models"]["old"]
        for row in res["rows"]:
            records.append({"candidate": res["candidate"], "embedding": "flip-averaged" if "flip" in row["case"] else "plain",
                            "train min": m["train_seconds"] / 60, "img/s": m["images_per_s"],
                            "top-1 (%)": row["top1"], "top-5 (%)": row["top5"], "mAP (%)": row["mAP"]})
    return pd.DataFrame.from_records(records).set_index(["candidate", "embedding"])


def chosen_candidate(profile, results: list[dict]) -> str | None:
    """The candidate whose stored model is the profile's own old model of seed ``recipe.seed`` (None: no candidate is)."""
    from .bct import model_specs

    key = model_specs(profile, profile.recipe.seed)["old"].key
    return next((r["candidate"] for r in results if r["models"].get("old", {}).get("key") == key), None)
