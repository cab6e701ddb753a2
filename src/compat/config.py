"""Typed, validated configuration and the named profiles (``smoke``, ``cpu``, ``gpu``).

Config flows one way: papermill parameters or command-line flags -> :func:`get_profile`
(+ overrides) -> frozen dataclasses validated on construction -> library calls.
A bad value fails here, before any work, naming the allowed values.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

from .config_text import parse_value, read_overrides, read_text
from .data import DataConfig
from .errors import ConfigError, check_choice, check_range, check_seeds
from .experiments import EXPERIMENTS  # registers every experiment and its config section
from .models import ModelConfig, check_image_size
from .splits import SCENARIOS
from .train import TrainConfig


@dataclass(frozen=True)
class ProtocolConfig:
    """What every chapter shares: seeds, the old/new data split and the evaluation.

    :param seeds: one full set of models per seed; every experiment runs these seeds unless its own
        section names seeds (``unibct.seeds``, ``bict.seeds``: they replace these for that experiment only),
        so a model one chapter trains serves the others.
    :param scenario: the old/new split (``extended-class``: old model on the first classes, new
        models on all, FCT's CIFAR-100 protocol); the UniBCT chapter runs all four.
    :param old_fraction: share of classes (or images per class) the old model trains on.
    :param distances: retrieval distances: ``l2`` on raw features (the FCT code) and ``cosine``
        (openBCT normalizes features before its L2 search).
    :param ablation_seed: the seed of every one-seed ablation (its models are the main table's when it is one of ``seeds``).
    :param test_flip: embed the val images flip-averaged (image and mirror image; airbench's test-time augmentation).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    scenario: str = "extended-class"
    old_fraction: float = 0.5
    distances: tuple[str, ...] = ("l2", "cosine")
    ablation_seed: int = 0
    test_flip: bool = False

    def __post_init__(self) -> None:
        check_seeds("protocol.seeds", self.seeds)
        check_choice("protocol.scenario", self.scenario, SCENARIOS)
        check_range("protocol.old_fraction", self.old_fraction, 0, 1, low_open=True, high_open=True)
        if not self.distances or len(set(self.distances)) != len(self.distances):
            raise ConfigError(f"protocol.distances must be distinct and non-empty, got {self.distances!r}")
        for d in self.distances:
            check_choice("protocol.distances item", d, ("l2", "cosine"))
        check_range("protocol.ablation_seed", self.ablation_seed, 0, 2**31 - 1)


@dataclass(frozen=True)
class Profile:
    """A named parameter set: the same code at another scale.

    :param name: ``smoke`` (CI), ``cpu`` (what the book shows) or ``gpu`` (full scale).
    :param description: one line for tables and the README.
    :param data: the data config.
    :param model: the architecture of old and new models (identical, as in the FCT code).
    :param old_train: the old model's recipe.
    :param new_train: the new models' recipe (the same schedule as the old model's, as in the papers).
    :param protocol: seeds, split and evaluation shared by every chapter.
    :param sections: each registered experiment's own settings, by experiment name (``profile.bct``, ...).
    """

    name: str
    description: str
    data: DataConfig
    model: ModelConfig
    old_train: TrainConfig
    new_train: TrainConfig
    protocol: ProtocolConfig
    sections: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_image_size(self.model, self.data.image_size)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "sections":
            raise AttributeError(name)
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(f"profile has no field or experiment section {name!r}") from None


BASE_PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="synthetic 20-class images, tiny model: exercises every code path in seconds (CI)",
        data=DataConfig(dataset="synthetic", image_size=32),
        model=ModelConfig(backbone="airnet", width=8, embedding_dim=32),
        old_train=TrainConfig(epochs=3, batch_size=64, lr=0.1, warmup_epochs=1, ema_decay=0.9),
        new_train=TrainConfig(epochs=3, batch_size=64, lr=0.1, warmup_epochs=1, ema_decay=0.9),
        protocol=ProtocolConfig(seeds=(0, 1), test_flip=True),
    ),
    "cpu": Profile(
        name="cpu",
        description="Tiny-ImageNet-200 at 32x32, airbench-style network: what the book shows, trainable on 2 CPU cores",
        data=DataConfig(dataset="tiny-imagenet", image_size=32),
        # the recipe study's choice (recipe chapter): airnet width 32, EMA of the weights, flip-averaged test embeddings
        model=ModelConfig(backbone="airnet", width=32, embedding_dim=128),
        old_train=TrainConfig(epochs=6, batch_size=256, lr=0.2, warmup_epochs=0.5, ema_decay=0.999),
        new_train=TrainConfig(epochs=6, batch_size=256, lr=0.2, warmup_epochs=0.5, ema_decay=0.999),
        # the profile lists what its committed result files cover (BiCT and UniBCT name their own seeds)
        protocol=ProtocolConfig(seeds=(0, 1, 2), test_flip=True),
    ),
    "gpu": Profile(
        name="gpu",
        description="Tiny-ImageNet-200 at 64x64, full-width ResNet, the papers' longer schedules (for a GPU)",
        data=DataConfig(dataset="tiny-imagenet", image_size=64),
        model=ModelConfig(backbone="resnet18", width=64, embedding_dim=128),
        old_train=TrainConfig(epochs=100, batch_size=256, lr=0.2, warmup_epochs=5),
        new_train=TrainConfig(epochs=100, batch_size=256, lr=0.2, warmup_epochs=5),
        protocol=ProtocolConfig(seeds=(0, 1, 2)),
    ),
}
PROFILES = tuple(BASE_PROFILES)


def get_profile(name: str, overrides: Mapping[str, object] | str | None = None) -> Profile:
    """The profile ``name`` with every registered experiment's section and dotted-key ``overrides`` applied,
    e.g. ``{"data.image_size": 64, "protocol.seeds": "0,1"}``. Values may be text (the command line,
    papermill) or typed; each is parsed to its field's declared type and validated."""
    check_choice("profile", name, BASE_PROFILES)
    if isinstance(overrides, str):  # papermill's -p passes text: '{"protocol.seeds": [0, 1]}'
        overrides = read_overrides(overrides)
    elif overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides must be a mapping of dotted config keys to values, got {overrides!r}")
    else:  # text values (the command line's, or papermill's in a mapping) are read as the text above is
        overrides = {k: read_text(v, f"config key {k!r}") if isinstance(v, str) else v for k, v in (overrides or {}).items()}
    sections = {exp.name: exp.section_config(name) for exp in EXPERIMENTS.values() if exp.config_class is not None}
    profile = dataclasses.replace(BASE_PROFILES[name], sections=sections)
    tree: dict = {}
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"config keys are dotted strings such as 'protocol.seeds', got {key!r}")
        node = tree
        *groups, leaf = key.split(".")
        for group in groups:
            node = node.setdefault(group, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {key!r} names a group; set one of its keys")
        node[leaf] = (value, key)
    return _apply(profile, tree)


def value_at(profile: Profile, key: str):
    """The value of dotted ``key`` in ``profile`` (a section's keys start with its experiment's name), typed as the
    config holds it, lists for tuples: what a notebook is shown as the value that ran."""
    node = profile
    for part in key.split("."):
        node = node.sections[part] if isinstance(node, Profile) and part in node.sections else getattr(node, part)
    return list(node) if isinstance(node, tuple) else node


def config_keys(obj, prefix: str = "") -> list[str]:
    """Every settable dotted key under ``obj`` (a profile or a section)."""
    keys = []
    items = obj.sections.items() if isinstance(obj, Profile) else ()
    for f in dataclasses.fields(obj):
        if f.name in ("name", "description", "sections"):
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += config_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    for section, value in items:
        keys += config_keys(value, f"{prefix}{section}.")
    return keys


def _children(obj) -> list[str]:
    names = [f.name for f in dataclasses.fields(obj) if f.name not in ("name", "description", "sections")]
    return names + (list(obj.sections) if isinstance(obj, Profile) else [])


def _apply(obj, tree: dict):
    """``obj`` with the overrides in ``tree`` (name -> (value, full key) or a sub-tree): every field of one
    group is replaced at once, so that fields validated together (epochs and warm-up epochs) can change together."""
    names = _children(obj)
    changes, sections = {}, {}
    for name, sub in tree.items():
        full_key = _first_key(sub)
        if name not in names:
            raise ConfigError(f"unknown config key {full_key!r}; allowed at this level: {', '.join(names)}")
        current = obj.sections[name] if isinstance(obj, Profile) and name in obj.sections else getattr(obj, name)
        if isinstance(sub, dict):
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"config key {full_key!r}: {name} has no sub-keys")
            (sections if isinstance(obj, Profile) and name in obj.sections else changes)[name] = _apply(current, sub)
            continue
        if dataclasses.is_dataclass(current):
            raise ConfigError(f"config key {full_key!r} names a group; set one of its keys")
        changes[name] = parse_value(sub[0], typing.get_type_hints(type(obj))[name], full_key)
    if sections:
        changes["sections"] = {**obj.sections, **sections}
    try:
        return dataclasses.replace(obj, **changes)
    except ConfigError as exc:
        keys = [_first_key(sub) for sub in tree.values()]
        if any(k in str(exc) or k.rsplit(".", 1)[-1] in str(exc) for k in keys):
            raise
        raise ConfigError(f"config keys {', '.join(map(repr, keys))}: {exc}") from None


def _first_key(sub) -> str:
    """The full dotted key of an override leaf, or of the first leaf of a sub-tree (for messages)."""
    while isinstance(sub, dict):
        sub = next(iter(sub.values()))
    return sub[1]
