"""Models and embeddings as stored artefacts: get-or-train, get-or-embed, keyed by their full spec.

A :class:`ModelSpec` names everything that determines a trained model: data, training
subset, architecture, recipe, method (plain, BCT influence loss, L2 compatibility, SimCLR
side-information), seed and, for compatible methods, the old model's own spec. Its key is a
hash of all of that, so every experiment asking for the same old model gets the same stored
artefact. A :class:`TransformationSpec` does the same for FCT's transformation h.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import distributed
from .augment import fixed_view
from .checkpoints import kept_checkpoint
from .data import DataConfig
from .errors import ConfigError, check_choice, check_range
from .methods import METHODS, MethodOptions, PlainOptions, TrainingContext, get_method
from .models import EmbeddingModel, ModelConfig, check_image_size
from .provenance import environment
from .splits import SCENARIOS, Subset, make_split
from .store import ADDED_OPTION, DamagedArtefact, Store, canonical, config_key
from .train import TrainConfig, embed, fit, pinned_threads
from .transformations import TransformationConfig, VectorTransformation, build_transformation, fit_transformation, upgrade_gallery


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
class ModelSpec:
    """Everything that determines one trained model.

    :param init_stream: a further initialization stream (0: the default), for a model that would otherwise
        start from the same weights as another one it is compared with (BiCT's first generation and the
        BCT chapter's old model are both "old" models of one seed).
    """

    data: DataConfig
    subset: SubsetSpec
    model: ModelConfig
    train: TrainConfig
    seed: int
    method: MethodOptions = field(default_factory=PlainOptions)
    parent: ModelSpec | None = None
    init_stream: int = field(default=0, metadata=ADDED_OPTION)

    def __post_init__(self) -> None:
        if not isinstance(self.method, MethodOptions):
            raise ConfigError(f"a model's method is a method's options (compat.methods.method_options), got {self.method!r}")
        if get_method(self.method.name).needs_parent and self.parent is None:
            raise ConfigError(f"method {self.method.name!r} needs a parent (old) model")
        check_range("init_stream", self.init_stream, 0, 99)
        check_image_size(self.model, self.data.image_size)
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
    from weights of its own, and so does a model with its own ``init_stream``."""
    role = 0 if spec.subset.role == "old" else 1
    return 1000 * spec.seed + role + (2 if spec.method.name == "simclr" else 0) + 10 * spec.init_stream


def _build(spec: ModelSpec, num_classes: int) -> EmbeddingModel:
    torch.manual_seed(init_seed(spec))
    return EmbeddingModel(spec.model, num_classes)


def _context(spec: ModelSpec, subset: Subset, labels: np.ndarray, store: Store) -> TrainingContext:
    """What the method of ``spec`` may use: its parent model, the parent's classes and embeddings of the training rows."""
    ctx = TrainingContext(spec=spec, classes=subset.classes, labels=labels)
    if spec.parent is not None:
        ctx.parent_model = lambda: get_model(spec.parent, store)
        ctx.parent_classes = lambda: store.model_meta(spec.parent.key)["classes"]
        ctx.parent_embeddings = lambda: get_embeddings(spec.parent, store, rows=spec.subset)
    return ctx


TRAIN_POLICIES = ("allow", "never")


def training_policy() -> str:
    """``COMPAT_TRAIN``: ``allow`` (default: train what the store lacks) or ``never`` (CI: a missing artefact is an
    error); anything else is refused, so that a typo cannot turn the guard off."""
    value = os.environ.get("COMPAT_TRAIN", "allow")
    check_choice("COMPAT_TRAIN", value, TRAIN_POLICIES)
    return value


def _check_training_allowed(what: str) -> None:
    if training_policy() == "never":
        raise ConfigError(
            f"{what} is not in the store and COMPAT_TRAIN=never forbids training it: its result file is missing "
            "or stale; run `python -m compat run EXPERIMENT --profile PROFILE` where training is allowed, and commit results/"
        )


def _load_intact(store: Store, key: str, module: torch.nn.Module, what: str) -> bool:
    """Load stored weights into ``module``; a damaged file is named, forgotten and reported False (to be trained
    again), or refused under ``COMPAT_TRAIN=never``."""
    try:
        store.load_model(key, module)
        return True
    except DamagedArtefact as exc:
        _check_training_allowed(f"{what} {key} is damaged ({exc}) and")
        warnings.warn(f"{exc}; training it again", stacklevel=3)
        store.remove_model(key)
        return False


def read_intact_result(store: Store, experiment: str, profile: str, key: str) -> dict | None:
    """The result file of ``key``, or None if it is missing or damaged (named in a warning; the run makes it
    again and replaces it); a damaged one is refused under ``COMPAT_TRAIN=never``."""
    try:
        return store.read_result(experiment, profile, key)
    except DamagedArtefact as exc:
        hint = f"{exc} (a committed file is restored by `git checkout -- results/{experiment}/{profile}`)"
        _check_training_allowed(f"result file {key}: {hint}; it")
        warnings.warn(f"{hint}; making it again", stacklevel=2)
        return None


class _Prepared(NamedTuple):
    images: np.ndarray
    subset: Subset
    labels: np.ndarray
    model: EmbeddingModel
    method: object
    terms: list


def _prepare(spec: ModelSpec, store: Store) -> _Prepared:
    """What training ``spec`` starts from: its images and labels, the freshly built model, its method and loss terms
    (the terms may store the parent's embeddings, so in a multi-process run rank 0 prepares before the others)."""
    data = spec.data.load()
    subset = spec.subset.select(data.train.labels)
    global_labels = data.train.labels[subset.indices]
    model = _build(spec, len(subset.classes))
    method = get_method(spec.method.name)
    terms = method.terms(_context(spec, subset, global_labels, store))
    return _Prepared(data.train.images[subset.indices], subset, subset.local_labels(global_labels), model, method, terms)


def _fit(spec: ModelSpec, store: Store, prepared: _Prepared, *, progress: bool | None = None, on_epoch=None) -> dict:
    branch = branch_point(spec, store)
    with pinned_threads(spec.train.threads):
        log = fit(
            prepared.model,
            prepared.images,
            prepared.labels,
            spec.train,
            prepared.terms,
            seed=spec.seed,
            workdir=store.model_dir(spec.key) / "work",
            desc=f"{spec.method.name} {spec.subset.role} seed {spec.seed}",
            progress=progress,
            on_epoch=on_epoch,
            views=prepared.method.views,
            num_views=prepared.method.num_views,
            keep_epochs=kept_epochs(spec),
            branch=branch[1] if branch else None,
        )
    if log["branched_at_epoch"]:
        log["branched_from"] = plain_twin(spec).key
    return log


def plain_twin(spec: ModelSpec) -> ModelSpec:
    """The plain model of the same data, recipe, seed and initialisation as ``spec``."""
    return dataclasses.replace(spec, method=PlainOptions(), parent=None)


def kept_epochs(spec: ModelSpec) -> set[int]:
    """The epochs after which a plain model keeps its checkpoint: where a registered method that trains as plain
    training until then (its ``plain_until``, at its default options) branches from it."""
    if spec.method.name != "plain":
        return set()
    epochs = spec.train.epochs
    return {e for m in METHODS.values() if m.plain_until and 0 < (e := m.plain_until(m.options(), epochs)) < epochs}


def branch_epoch(spec: ModelSpec) -> int:
    """The epochs ``spec`` trains exactly as its plain twin before its method departs (0: none, it differs from
    the first step or never reaches its own epochs)."""
    until = get_method(spec.method.name).plain_until
    epoch = until(spec.method, spec.train.epochs) if until else 0
    return epoch if 0 < epoch < spec.train.epochs else 0


def branch_point(spec: ModelSpec, store: Store) -> tuple[ModelSpec, Path] | None:
    """(the plain twin, its kept checkpoint) that ``spec`` may start from instead of repeating the epochs before
    its method departs from plain training (UniBCT before its prototype term switches on); None where there is
    no such epoch or the twin did not keep it. The run is bitwise the one from scratch (tested), so the key is
    the model's own; the branch is recorded in its training log."""
    epoch = branch_epoch(spec)
    if not epoch:
        return None
    twin = plain_twin(spec)
    path = kept_checkpoint(store.model_dir(twin.key) / "work", epoch)
    return (twin, path) if path.is_file() else None


def help_train(spec: ModelSpec, store: Store) -> None:
    """A rank > 0 of a multi-process run: train ``spec`` together with rank 0 (which keeps and stores the result)."""
    _fit(spec, store, _prepare(spec, store), progress=False)


def get_model(spec: ModelSpec, store: Store, *, progress: bool | None = None, on_epoch=None) -> EmbeddingModel:
    """The trained model of ``spec``: loaded from the store, or trained (resuming a checkpoint) and stored.
    In a multi-process run (rank 0 runs this) the other ranks are asked to help train it (:func:`help_train`).

    :param on_epoch: passed to :func:`compat.train.fit` when the model is trained here (a per-epoch measurement).
    """
    key = spec.key
    with store.lock(key):
        if store.has_model(key):
            model = _build(spec, len(store.model_meta(key)["classes"]))
            if _load_intact(store, key, model, "model"):
                return model.eval()
        _check_training_allowed(f"model {key} ({spec.method.name} {spec.subset.role}, seed {spec.seed})")
        prepared = _prepare(spec, store)
        distributed.announce(spec)
        log = _fit(spec, store, prepared, progress=progress, on_epoch=on_epoch)
        meta = {"key": key, "spec": canonical(spec), "classes": prepared.subset.classes.tolist(), "log": log, "environment": environment()}
        store.save_model(key, prepared.model, meta)
        return prepared.model.eval()


def get_embeddings(
    spec: ModelSpec,
    store: Store,
    rows: SubsetSpec | None = None,
    view: tuple[int, int] | None = None,
    flip: bool = False,
    translate: bool = False,
) -> np.ndarray:
    """Embeddings by the model of ``spec`` of the val images, or of the training rows that ``rows`` selects.

    :param view: (number, crop padding): embed that fixed augmented view of the images (:func:`compat.augment.fixed_view`).
    :param flip: flip-averaged embeddings (test-time augmentation, :func:`compat.train.embed`).
    :param translate: with ``flip``, airbench's fuller test-time augmentation (one-pixel shifts too).
    """
    parts = {"model": spec.key, "part": "train" if rows else "val", "rows": rows}
    if view is not None:
        parts["view"] = list(view)
    if flip:
        parts["flip"] = True
    if translate:
        parts["translate"] = True
    key = config_key(parts)
    cached = store.load_embeddings(key)
    if cached is not None:
        return cached
    model = get_model(spec, store)
    data = spec.data.load()
    images = data.val.images if rows is None else data.train.images[rows.select(data.train.labels).indices]
    if view is not None:
        images = fixed_view(images, *view)
    with pinned_threads(spec.train.threads):
        z = embed(model, images, flip=flip, translate=translate)
    store.save_embeddings(key, z)
    return z


@dataclass(frozen=True)
class TransformationSpec:
    """Everything that determines one trained FCT transformation h: the old, new and side-information
    models (``side=None``: no side-information, h gets the old embedding twice), recipe and seed.
    h trains on the new model's training rows.

    :param through: earlier transformations (without side-information) that the old model's vectors pass through,
        in order, before they reach h: h is then trained on what a gallery upgraded by them holds (BiCT's
        chain-consistent upgrade; empty: on the old model's own embeddings).
    """

    old: ModelSpec
    new: ModelSpec
    side: ModelSpec | None
    config: TransformationConfig
    seed: int
    through: tuple[TransformationSpec, ...] = field(default=(), metadata=ADDED_OPTION)

    def __post_init__(self) -> None:
        for step in self.through:
            if step.old != self.old or step.side is not None:
                raise ConfigError(
                    "every earlier transformation must start from the old model of the one trained after it, "
                    "without side-information (a gallery upgraded step by step)"
                )
        if self.through and self.side is not None:
            raise ConfigError("a transformation trained on upgraded vectors takes no side-information (the gallery holds none)")

    @property
    def key(self) -> str:
        return config_key({"transformation": self})

    def side_dim(self) -> int:
        return (self.side or self.old).model.embedding_dim


def _build_transformation(spec: TransformationSpec) -> VectorTransformation:
    torch.manual_seed(10_000 + spec.seed)
    return build_transformation(spec.config, spec.old.model.embedding_dim, spec.side_dim(), spec.new.model.embedding_dim)


def get_transformation(spec: TransformationSpec, store: Store) -> VectorTransformation:
    """The trained h of ``spec``: loaded from the store, or trained on the stored embeddings of the new training set."""
    key = spec.key
    with store.lock(key):
        h = _build_transformation(spec)
        if store.has_model(key) and _load_intact(store, key, h, "transformation"):
            return h.eval()
        _check_training_allowed(f"transformation {key} (seed {spec.seed}, side {spec.side_dim()}-d)")
        rows, padding = spec.new.subset, spec.new.train.crop_padding
        earlier = [get_transformation(t, store) for t in spec.through]
        views = []
        for number in range(1, spec.config.augmented_views + 1):
            view = (number, padding)
            old = upgrade_chain(earlier, get_embeddings(spec.old, store, rows=rows, view=view))  # training images only
            side = old if spec.side is None else get_embeddings(spec.side, store, rows=rows, view=view)
            views.append((old, side, get_embeddings(spec.new, store, rows=rows, view=view)))
        val_old = upgrade_chain(earlier, get_embeddings(spec.old, store))  # validation: the val images, un-augmented (never the upgrade's input)
        val_side = val_old if spec.side is None else get_embeddings(spec.side, store)
        validation = (val_old, val_side, get_embeddings(spec.new, store))
        with pinned_threads(spec.config.threads):
            log = fit_transformation(h, views, spec.config, seed=spec.seed, validation=validation, desc=f"h seed {spec.seed}")
        meta = {"key": key, "spec": canonical(spec), "log": log, "environment": environment()}
        store.save_model(key, h, meta)
        return h.eval()


def upgrade_chain(transformations: list[VectorTransformation], stored: np.ndarray) -> np.ndarray:
    """A stored gallery upgraded generation after generation: h_k(... h_2(stored)), each without side-information
    (the gallery's current vectors fill both inputs). Stored vectors in, vectors out: no image enters."""
    gallery = stored
    for h in transformations:
        gallery = upgrade_gallery(h, gallery, gallery)
    return gallery


def get_upgraded_gallery(spec: TransformationSpec, store: Store, flip: bool = False) -> np.ndarray:
    """The val gallery upgraded by h from its stored old embeddings and side-information (no images).

    :param flip: the stored vectors are flip-averaged embeddings (the protocol's ``test_flip``).
    """
    old = get_embeddings(spec.old, store, flip=flip)
    side = old if spec.side is None else get_embeddings(spec.side, store, flip=flip)
    return upgrade_gallery(get_transformation(spec, store), old, side)
