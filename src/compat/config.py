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
class Profile:
    """A named parameter set: the same code at another scale.

    :param name: ``smoke`` (CI), ``cpu`` (what the book shows) or ``gpu`` (full scale).
    :param description: one line for tables and the README.
    :param data: the data config.
    """

    name: str
    description: str
    data: DataConfig = field(default_factory=DataConfig)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        "synthetic 20-class images, tiny model: exercises every code path in seconds (CI)",
        DataConfig(dataset="synthetic", image_size=32),
    ),
    "cpu": Profile(
        "cpu",
        "Tiny-ImageNet-200 at 32x32, narrow ResNet: what the book shows, trainable on 2 CPU cores",
        DataConfig(dataset="tiny-imagenet", image_size=32),
    ),
    "gpu": Profile(
        "gpu",
        "Tiny-ImageNet-200 at 64x64, full-width ResNet, the papers' longer schedules (for a GPU)",
        DataConfig(dataset="tiny-imagenet", image_size=64),
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
    return dataclasses.replace(obj, **{path[0]: value})


def _parse(text: str, kind: type, key: str):
    """Command-line text to the field's type (bool, int, float)."""
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        return kind(text)
    except ValueError:
        raise ConfigError(f"config key {key!r} wants a {kind.__name__}, got {text!r}") from None
