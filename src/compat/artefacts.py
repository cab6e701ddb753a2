"""Models and embeddings as stored artefacts: get-or-train, get-or-embed, keyed by their full spec.

A :class:`ModelSpec` names everything that determines a trained model: data, training
subset, architecture, recipe, method (plain, BCT influence loss, L2 compatibility, SimCLR
side-information), seed and, for compatible methods, the old model's own spec. Its key is a
hash of all of that, so every experiment asking for the same old model gets the same stored
artefact. A :class:`TransformationSpec` does the same for FCT's transformation h.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import DataConfig
from .errors import ConfigError, check_choice, check_range
from .augment import simclr_view
from .losses import CrossEntropy, InfluenceLoss, L2Compatibility, LossTerm, NTXent, synthesize_classifier
from .models import EmbeddingModel, ModelConfig
from .provenance import environment
from .splits import SCENARIOS, Subset, make_split
from .store import ADDED_OPTION, Store, canonical, config_key
from .train import TrainConfig, embed, fit
from .transformation import Transformation, TransformationConfig, fit_transformation, upgrade_gallery

METHODS = ("plain", "bct", "l2", "simclr")
COMPATIBLE_METHODS = ("bct", "l2")  # trained against a parent (old) model


@dataclass(frozen=True)
class SubsetSpec:
    """Which training rows a model sees: the ``role`` side of a :func:`compat.splits.make_split` scenario."""

    scenario: str = "extended-class"
    old_fraction: float = 0.5
    role: str = "old"
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_choice("scenario", self.scenario, SCENARIOS)
        check_choice("role", self.role, ("old", "new"))
        check_range("old_fraction", self.old_fraction, 0, 1, low_open=True, high_open=True)

    def select(self, labels: np.ndarray) -> Subset:
        split = make_split(self.scenario, labels, self.old_fraction, self.split_seed)
        return split.old if self.role == "old" else split.new


@dataclass(frozen=True)
class MethodSpec:
    """How the model is trained against its parent (old) model.

    :param name: ``plain`` (cross-entropy only), ``bct`` (+ influence loss), ``l2`` (+ L2 compatibility)
        or ``simclr`` (self-supervised NT-Xent on two views, no labels: FCT's side-information model).
    :param weight: lambda of the compatibility term.
    :param normalize: BCT only: cosine logits of normalized embedding and classifier rows (BT-2 code).
    :param temperature: SimCLR only: of the NT-Xent loss.
    """

    name: str = "plain"
    weight: float = 1.0
    normalize: bool = False
    temperature: float = field(default=0.1, metadata=ADDED_OPTION)

    def __post_init__(self) -> None:
        check_choice("method", self.name, METHODS)
        check_range("method weight", self.weight, 0)
        check_range("temperature", self.temperature, 0, 10, low_open=True)


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines one trained model."""

    data: DataConfig
    subset: SubsetSpec
    model: ModelConfig
    train: TrainConfig
    seed: int
    method: MethodSpec = field(default_factory=MethodSpec)
    parent: ModelSpec | None = None

    def __post_init__(self) -> None:
        if self.method.name in COMPATIBLE_METHODS and self.parent is None:
            raise ConfigError(f"method {self.method.name!r} needs a parent (old) model")
        if self.parent is not None and self.parent.model.embedding_dim != self.model.embedding_dim:
            raise ConfigError(
                f"embedding sizes differ: old {self.parent.model.embedding_dim}, new {self.model.embedding_dim}; "
                "BCT and L2 compare the two embeddings directly"
            )

    @property
    def key(self) -> str:
        return config_key(self)


def init_seed(spec: ModelSpec) -> int:
    """The weight-initialisation seed: old and new models of one seed start from different weights,
    as independently developed models do (shared starting weights would leave an "independent"
    new model partly compatible after a short schedule); the new models of one seed share their
    start, so independent, BCT and L2 are a paired comparison. A side-information model starts
    from weights of its own."""
    return 1000 * spec.seed + (0 if spec.subset.role == "old" else 1) + (2 if spec.method.name == "simclr" else 0)


def _build(spec: ModelSpec, num_classes: int) -> EmbeddingModel:
    torch.manual_seed(init_seed(spec))
    return EmbeddingModel(spec.model, num_classes)


def _influence_classifier(spec: ModelSpec, subset: Subset, labels: np.ndarray, store: Store) -> torch.Tensor:
    """BCT's influence classifier for ``spec`` from its stored parent (old) model."""
    parent = get_model(spec.parent, store)
    return synthesize_classifier(
        parent.classifier.weight.detach(),
        store.model_meta(spec.parent.key)["classes"],
        torch.from_numpy(get_embeddings(spec.parent, store, rows=spec.subset)),
        torch.from_numpy(labels),
        subset.classes.tolist(),
    )


def _terms(spec: ModelSpec, subset: Subset, labels: np.ndarray, store: Store) -> list[LossTerm]:
    if spec.method.name == "simclr":
        return [NTXent(spec.method.temperature)]
    terms: list[LossTerm] = [CrossEntropy(spec.train.label_smoothing)]
    if spec.method.name == "bct":
        classifier = _influence_classifier(spec, subset, labels, store)
        terms.append(InfluenceLoss(classifier, spec.method.weight, spec.method.normalize, spec.train.label_smoothing))
    elif spec.method.name == "l2":
        terms.append(L2Compatibility(get_model(spec.parent, store), spec.method.weight))
    return terms


def _check_training_allowed(what: str) -> None:
    if os.environ.get("COMPAT_TRAIN", "allow") == "never":
        raise ConfigError(
            f"{what} is not in the store and COMPAT_TRAIN=never forbids training it: its result file is missing "
            "or stale; run `python -m compat run EXPERIMENT --profile PROFILE` where training is allowed, and commit results/"
        )


def get_model(spec: ModelSpec, store: Store, *, progress: bool | None = None, on_epoch=None) -> EmbeddingModel:
    """The trained model of ``spec``: loaded from the store, or trained (resuming a checkpoint) and stored.

    :param on_epoch: passed to :func:`compat.train.fit` when the model is trained here (a per-epoch measurement).
    """
    key = spec.key
    with store.lock(key):
        if store.has_model(key):
            model = _build(spec, len(store.model_meta(key)["classes"]))
            store.load_model(key, model)
            return model.eval()
        _check_training_allowed(f"model {key} ({spec.method.name} {spec.subset.role}, seed {spec.seed})")
        data = spec.data.load()
        subset = spec.subset.select(data.train.labels)
        global_labels = data.train.labels[subset.indices]
        model = _build(spec, len(subset.classes))
        terms = _terms(spec, subset, global_labels, store)
        log = fit(
            model,
            data.train.images[subset.indices],
            subset.local_labels(global_labels),
            spec.train,
            terms,
            seed=spec.seed,
            workdir=store.model_dir(key) / "work",
            desc=f"{spec.method.name} {spec.subset.role} seed {spec.seed}",
            progress=progress,
            on_epoch=on_epoch,
            **({"views": simclr_view, "num_views": 2} if spec.method.name == "simclr" else {}),
        )
        meta = {"key": key, "spec": canonical(spec), "classes": subset.classes.tolist(), "log": log, "environment": environment()}
        store.save_model(key, model, meta)
        return model.eval()


def get_embeddings(spec: ModelSpec, store: Store, rows: SubsetSpec | None = None) -> np.ndarray:
    """Embeddings by the model of ``spec`` of the val images, or of the training rows that ``rows`` selects."""
    key = config_key({"model": spec.key, "part": "train" if rows else "val", "rows": rows})
    cached = store.load_embeddings(key)
    if cached is not None:
        return cached
    model = get_model(spec, store)
    data = spec.data.load()
    images = data.val.images if rows is None else data.train.images[rows.select(data.train.labels).indices]
    z = embed(model, images)
    store.save_embeddings(key, z)
    return z


@dataclass(frozen=True)
class TransformationSpec:
    """Everything that determines one trained FCT transformation h: the old, new and side-information
    models (``side=None``: no side-information, h gets the old embedding twice), recipe and seed.
    h trains on the new model's training rows."""

    old: ModelSpec
    new: ModelSpec
    side: ModelSpec | None
    config: TransformationConfig
    seed: int

    @property
    def key(self) -> str:
        return config_key({"transformation": self})

    def side_dim(self) -> int:
        return (self.side or self.old).model.embedding_dim


def _build_transformation(spec: TransformationSpec) -> Transformation:
    torch.manual_seed(10_000 + spec.seed)
    return Transformation(spec.old.model.embedding_dim, spec.side_dim(), spec.new.model.embedding_dim, spec.config.inner_dim)


def get_transformation(spec: TransformationSpec, store: Store) -> Transformation:
    """The trained h of ``spec``: loaded from the store, or trained on the stored embeddings of the new training set."""
    key = spec.key
    with store.lock(key):
        h = _build_transformation(spec)
        if store.has_model(key):
            store.load_model(key, h)
            return h.eval()
        _check_training_allowed(f"transformation {key} (seed {spec.seed}, side {spec.side_dim()}-d)")
        rows = spec.new.subset
        old = get_embeddings(spec.old, store, rows=rows)
        side = old if spec.side is None else get_embeddings(spec.side, store, rows=rows)
        target = get_embeddings(spec.new, store, rows=rows)
        log = fit_transformation(h, old, side, target, spec.config, seed=spec.seed, desc=f"h seed {spec.seed}")
        meta = {"key": key, "spec": canonical(spec), "log": log, "environment": environment()}
        store.save_model(key, h, meta)
        return h.eval()


def get_upgraded_gallery(spec: TransformationSpec, store: Store) -> np.ndarray:
    """The val gallery upgraded by h from its stored old embeddings and side-information (no images)."""
    old = get_embeddings(spec.old, store)
    side = old if spec.side is None else get_embeddings(spec.side, store)
    return upgrade_gallery(get_transformation(spec, store), old, side)
