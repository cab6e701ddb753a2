"""Typed, validated configuration and the named profiles (``smoke``, ``cpu``, ``gpu``).

Config flows one way: papermill parameters or command-line flags -> :func:`get_profile`
(+ overrides) -> frozen dataclasses validated on construction -> library calls.
A bad value fails here, before any work, naming the allowed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .data import DATASETS, PREPARED_SIZES, Dataset, load_dataset
from .errors import ConfigError, check_choice, check_range
from .models import ModelConfig
from .train import TrainConfig
from .transformation import TransformationConfig


@dataclass(frozen=True)
class DataConfig:
    """Which images the models see.

    :param dataset: ``tiny-imagenet`` (real) or ``synthetic`` (generated in code).
    :param image_size: image side in pixels; Tiny-ImageNet is prepared at 64 and 32.
    :param synthetic_classes: classes of the synthetic set.
    :param synthetic_train_per_class: training images per synthetic class.
    :param synthetic_val_per_class: val images per synthetic class.
    """

    dataset: str = "tiny-imagenet"
    image_size: int = 32
    synthetic_classes: int = 20
    synthetic_train_per_class: int = 40
    synthetic_val_per_class: int = 10

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        if self.dataset == "tiny-imagenet":
            check_choice("image_size", self.image_size, PREPARED_SIZES)
        else:
            check_range("image_size", self.image_size, 8, 256)
        check_range("synthetic_classes", self.synthetic_classes, 2)
        check_range("synthetic_train_per_class", self.synthetic_train_per_class, 2)
        check_range("synthetic_val_per_class", self.synthetic_val_per_class, 2)

    def load(self) -> Dataset:
        """The dataset this config names (prepared and memory-mapped for Tiny-ImageNet)."""
        if self.dataset == "synthetic":
            return load_dataset(
                "synthetic",
                self.image_size,
                num_classes=self.synthetic_classes,
                train_per_class=self.synthetic_train_per_class,
                val_per_class=self.synthetic_val_per_class,
            )
        return load_dataset(self.dataset, self.image_size)


@dataclass(frozen=True)
class BCTConfig:
    """The BCT table: old model on the first classes, new models on all (FCT's CIFAR-100 protocol).

    :param seeds: one full set of models per seed (old, independent new, BCT new, L2 new);
        the ablation seed's models are shared with the main table when it is one of them.
    :param old_fraction: share of classes the old model trains on (0.5: 100 of 200).
    :param influence_weight: lambda of the BCT influence loss.
    :param l2_weight: weight of the L2 compatibility loss.
    :param ablation: also run the one-seed ablations (influence weight, normalization).
    :param ablation_seed: the seed of the one-seed ablations.
    :param ablation_weight: the larger influence weight of the ablation (10 in the BT-2 code).
    :param distances: retrieval distances to report: ``l2`` on raw features (the FCT code's
        protocol) and ``cosine`` (openBCT normalizes features before its L2 search).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    old_fraction: float = 0.5
    influence_weight: float = 1.0
    l2_weight: float = 1.0
    ablation: bool = True
    ablation_seed: int = 0
    ablation_weight: float = 10.0
    distances: tuple[str, ...] = ("l2", "cosine")

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and non-empty, got {self.seeds}")
        check_range("old_fraction", self.old_fraction, 0, 1, low_open=True, high_open=True)
        check_range("influence_weight", self.influence_weight, 0)
        check_range("l2_weight", self.l2_weight, 0)
        check_range("ablation_weight", self.ablation_weight, 0)
        for d in self.distances:
            check_choice("distance", d, ("l2", "cosine"))


@dataclass(frozen=True)
class FCTConfig:
    """The FCT tables: the BCT table's old and independent new models (same seeds, shared through the
    store), a SimCLR side-information model on the old training data, and the transformation h.

    :param side_dim: side-information size of the main table (128 in the paper).
    :param ablation_side_dims: further sizes for the one-seed ablation (0 and ``side_dim`` come from the main table).
    :param side_train: the SimCLR model's recipe (two views per image; same backbone as the old model).
    :param temperature: of SimCLR's NT-Xent loss.
    :param transformation: h's architecture and recipe.
    :param ablation: also run the one-seed ablations (side-information size, BatchNorm freezing).
    :param ablation_seed: the seed of the ablations.
    :param cost_sizes: gallery sizes N at which the upgrade cost (h on stored vectors vs re-embedding images) is measured.
    :param picture_queries: val queries shown with their top-5 in the retrieval picture.
    """

    side_dim: int = 128
    ablation_side_dims: tuple[int, ...] = (8, 32)
    side_train: TrainConfig = field(default_factory=TrainConfig)
    temperature: float = 0.2
    transformation: TransformationConfig = field(default_factory=TransformationConfig)
    ablation: bool = True
    ablation_seed: int = 0
    cost_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    picture_queries: int = 6

    def __post_init__(self) -> None:
        for d in (self.side_dim, *self.ablation_side_dims):
            check_range("side-information size", d, 1, 4096)
        check_range("temperature", self.temperature, 0, 10, low_open=True)
        if not self.cost_sizes:
            raise ConfigError("cost_sizes must name at least one gallery size")
        for n in self.cost_sizes:
            check_range("cost size", n, 1, 10_000_000)
        check_range("picture_queries", self.picture_queries, 1, 50)


# recipe study (compat.experiments.recipe): candidate name -> changes to the profile's model and old-model recipe
RECIPE_CANDIDATES: dict[str, dict[str, dict]] = {
    "ResNet-20 w16": {"model": {"backbone": "resnet20", "width": 16}, "train": {}},
    "airnet w32": {"model": {"backbone": "airnet", "width": 32}, "train": {}},
    "airnet w32 + EMA": {"model": {"backbone": "airnet", "width": 32}, "train": {"ema_decay": 0.999}},
    "airnet w48": {"model": {"backbone": "airnet", "width": 48}, "train": {}},
    "airnet w32, lr 0.4, smoothing 0.2": {"model": {"backbone": "airnet", "width": 32}, "train": {"lr": 0.4, "label_smoothing": 0.2}},
}



@dataclass(frozen=True)
class RecipeConfig:
    """The recipe study: candidate old-model recipes, time to accuracy.

    :param candidates: names in :data:`RECIPE_CANDIDATES`.
    :param epochs: epochs of every candidate.
    :param seed: the study's one seed (seed 0 of the chapters: the chosen candidate's model is shared).
    """

    candidates: tuple[str, ...] = ("ResNet-20 w16", "airnet w32", "airnet w32 + EMA", "airnet w48", "airnet w32, lr 0.4, smoothing 0.2")
    epochs: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ConfigError("recipe.candidates must name at least one candidate")
        for name in self.candidates:
            check_choice("recipe candidate", name, RECIPE_CANDIDATES)
        check_range("recipe.epochs", self.epochs, 1, 1000)


@dataclass(frozen=True)
class Profile:
    """A named parameter set: the same code at another scale.

    :param name: ``smoke`` (CI), ``cpu`` (what the book shows) or ``gpu`` (full scale).
    :param description: one line for tables and the README.
    :param data: the data config.
    :param model: the architecture of old and new models (identical, as in the FCT code).
    :param old_train: the old model's recipe.
    :param new_train: the new models' recipe (twice the data: fewer epochs in the cpu budget).
    :param bct: the BCT table's settings (its seeds serve every chapter).
    :param fct: the FCT tables' settings.
    """

    name: str
    description: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    old_train: TrainConfig = field(default_factory=TrainConfig)
    new_train: TrainConfig = field(default_factory=TrainConfig)
    bct: BCTConfig = field(default_factory=BCTConfig)
    fct: FCTConfig = field(default_factory=FCTConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        "synthetic 20-class images, tiny model: exercises every code path in seconds (CI)",
        DataConfig(dataset="synthetic", image_size=32),
        ModelConfig(backbone="resnet20", width=4, embedding_dim=32),
        TrainConfig(epochs=3, batch_size=64, lr=0.1, warmup_epochs=1),
        TrainConfig(epochs=3, batch_size=64, lr=0.1, warmup_epochs=1),
        BCTConfig(seeds=(0, 1)),
        FCTConfig(
            side_dim=16,
            ablation_side_dims=(8,),
            side_train=TrainConfig(epochs=2, batch_size=64, lr=0.1, warmup_epochs=1),
            transformation=TransformationConfig(inner_dim=64, epochs=4, batch_size=128, warmup_epochs=1),
            cost_sizes=(100, 400),
            picture_queries=3,
        ),
    ),
    "cpu": Profile(
        "cpu",
        "Tiny-ImageNet-200 at 32x32, narrow ResNet: what the book shows, trainable on 2 CPU cores",
        DataConfig(dataset="tiny-imagenet", image_size=32),
        ModelConfig(backbone="resnet20", width=16, embedding_dim=128),
        TrainConfig(epochs=5, batch_size=256, lr=0.2, warmup_epochs=0.5),
        TrainConfig(epochs=3, batch_size=256, lr=0.2, warmup_epochs=0.5),
        BCTConfig(seeds=(0, 1, 2)),
        FCTConfig(
            side_train=TrainConfig(epochs=4, batch_size=256, lr=0.3, warmup_epochs=0.5),
            transformation=TransformationConfig(inner_dim=512, epochs=20, warmup_epochs=1.25),
        ),
    ),
    "gpu": Profile(
        "gpu",
        "Tiny-ImageNet-200 at 64x64, full-width ResNet, the papers' longer schedules (for a GPU)",
        DataConfig(dataset="tiny-imagenet", image_size=64),
        ModelConfig(backbone="resnet18", width=64, embedding_dim=128),
        TrainConfig(epochs=100, batch_size=256, lr=0.2, warmup_epochs=5),
        TrainConfig(epochs=100, batch_size=256, lr=0.2, warmup_epochs=5),
        BCTConfig(seeds=(0, 1, 2)),
        FCTConfig(side_train=TrainConfig(epochs=200, batch_size=512, lr=0.6, warmup_epochs=10)),
    ),
}


def get_profile(name: str, overrides: dict[str, object] | None = None) -> Profile:
    """The profile ``name`` with dotted-key ``overrides`` applied, e.g. ``{"data.image_size": 64}``."""
    check_choice("profile", name, PROFILES)
    profile = PROFILES[name]
    for key, value in (overrides or {}).items():
        profile = _override(profile, key.split("."), value, key)
    return profile


def _override(obj, path: list[str], value, full_key: str):
    names = [f.name for f in dataclasses.fields(obj) if f.name != "name"]
    if path[0] not in names:
        raise ConfigError(f"unknown config key {full_key!r}; allowed at this level: {', '.join(names)}")
    current = getattr(obj, path[0])
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"config key {full_key!r}: {path[0]} has no sub-keys")
        return dataclasses.replace(obj, **{path[0]: _override(current, path[1:], value, full_key)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"config key {full_key!r} names a group; set one of its keys")
    if isinstance(value, str) and not isinstance(current, str):
        value = _parse(value, type(current), full_key)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    return dataclasses.replace(obj, **{path[0]: value})


def _parse(text: str, kind: type, key: str):
    """Command-line text to the field's type (bool, int, float, or a comma-separated tuple of ints)."""
    try:
        if kind is tuple:
            items = [v.strip() for v in text.split(",") if v.strip()]
            return tuple(int(v) if v.lstrip("-").isdigit() else v for v in items)
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return kind(text)
    except ValueError:
        raise ConfigError(f"config key {key!r} wants a {kind.__name__}, got {text!r}") from None
