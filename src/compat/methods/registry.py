"""The registry of training methods: what a method is, its options, what it may use, and how it registers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import ConfigError, check_choice, check_range
from ..losses import LossTerm


@dataclass(frozen=True)
class MethodOptions:
    """A method's own options (a frozen dataclass per method, registered with it): what a model spec's ``method`` holds.

    Its key form is the one every stored model was keyed by: the method's name, its weight and ``normalize`` (1.0 and
    False where the method has neither), then each other option only where it differs from its default, so a method's
    options live with the method and adding one keeps every stored key.
    """

    name: ClassVar[str] = ""

    def key_form(self) -> dict:
        form = {"name": self.name, "weight": getattr(self, "weight", 1.0), "normalize": getattr(self, "normalize", False)}
        for f in dataclasses.fields(self):
            if f.name not in form and getattr(self, f.name) != f.default:
                form[f.name] = getattr(self, f.name)
        return form

    def _check_weight(self) -> None:
        check_range(f"{self.name} weight", self.weight, 0)


@dataclass
class TrainingContext:
    """What a method may use to build its loss terms for one model.

    :param spec: the model's :class:`compat.artefacts.ModelSpec` (its method options, recipe, parent spec).
    :param classes: global class ids of the model's classifier rows, in order.
    :param labels: global class ids of the training rows.
    :param parent_model: loads the frozen parent (old) model.
    :param parent_classes: global class ids of the parent's classifier rows.
    :param parent_embeddings: the parent's embeddings of the training rows (N x D).
    """

    spec: object
    classes: np.ndarray
    labels: np.ndarray
    parent_model: Callable[[], object] = field(default=lambda: None)
    parent_classes: Callable[[], list[int]] = field(default=lambda: [])
    parent_embeddings: Callable[[], np.ndarray] = field(default=lambda: np.empty((0, 0)))


@dataclass(frozen=True)
class Method:
    """A registered training method.

    :param name: the string configs and papermill pass.
    :param options: the method's :class:`MethodOptions` class.
    :param needs_parent: trained against a parent (old) model.
    :param terms: builds the loss terms from a :class:`TrainingContext`.
    :param views: makes one augmented view of a uint8 batch (None: the recipe's crop + flip).
    :param num_views: augmented views per image in a step (2: SimCLR's pairs, no labels).
    :param plain_until: ``(method options, epochs) -> E``: the method trains exactly as plain training for its
        first E epochs (its terms leave the model unchanged until then), so it may branch from the plain model's
        checkpoint after epoch E (0 or None: it differs from the first step).
    """

    name: str
    options: type[MethodOptions]
    needs_parent: bool
    terms: Callable[[TrainingContext], list[LossTerm]]
    views: Callable | None = None
    num_views: int = 1
    plain_until: Callable[[object, int], int] | None = None


METHODS: dict[str, Method] = {}


def register_method(
    name: str,
    options: type[MethodOptions],
    *,
    needs_parent: bool,
    views: Callable | None = None,
    num_views: int = 1,
    plain_until: Callable[[object, int], int] | None = None,
):
    """Decorator: register ``terms(context) -> list[LossTerm]`` as method ``name`` with its ``options`` class."""

    def wrap(terms):
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        if not (isinstance(options, type) and issubclass(options, MethodOptions) and dataclasses.is_dataclass(options)):
            raise ConfigError(f"method {name!r}: its options must be a MethodOptions dataclass, got {options!r}")
        options.name = name
        METHODS[name] = Method(name, options, needs_parent, terms, views, num_views, plain_until)
        return terms

    return wrap


def get_method(name: str) -> Method:
    """The method registered as ``name`` (an unknown name fails with the known ones)."""
    check_choice("method", name, METHODS)
    return METHODS[name]


def method_options(name: str = "plain", *args, **options) -> MethodOptions:
    """The options of method ``name`` (``method_options("bct", 2.0, normalize=True)``); an option the method does
    not have is refused naming the ones it has."""
    known = [f.name for f in dataclasses.fields(get_method(name).options)]
    for option in options:
        if option not in known:
            raise ConfigError(f"method {name!r} has no option {option!r}; its options: {', '.join(known) or 'none'}")
    if len(args) > len(known):
        raise ConfigError(f"method {name!r} takes {len(known)} options ({', '.join(known) or 'none'}), got {len(args)} values")
    return METHODS[name].options(*args, **options)
