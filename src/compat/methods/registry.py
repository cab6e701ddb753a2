"""The registry of training methods: what a method is, what it may use, and how it registers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import check_choice
from ..losses import LossTerm


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
    :param needs_parent: trained against a parent (old) model.
    :param terms: builds the loss terms from a :class:`TrainingContext`.
    :param views: makes one augmented view of a uint8 batch (None: the recipe's crop + flip).
    :param num_views: augmented views per image in a step (2: SimCLR's pairs, no labels).
    :param plain_until: ``(method options, epochs) -> E``: the method trains exactly as plain training for its
        first E epochs (its terms leave the model unchanged until then), so it may branch from the plain model's
        checkpoint after epoch E (0 or None: it differs from the first step).
    """

    name: str
    needs_parent: bool
    terms: Callable[[TrainingContext], list[LossTerm]]
    views: Callable | None = None
    num_views: int = 1
    plain_until: Callable[[object, int], int] | None = None


METHODS: dict[str, Method] = {}


def register_method(
    name: str, *, needs_parent: bool, views: Callable | None = None, num_views: int = 1, plain_until: Callable[[object, int], int] | None = None
):
    """Decorator: register ``terms(context) -> list[LossTerm]`` as method ``name``."""

    def wrap(terms):
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = Method(name, needs_parent, terms, views, num_views, plain_until)
        return terms

    return wrap


def get_method(name: str) -> Method:
    """The method registered as ``name`` (an unknown name fails with the known ones)."""
    check_choice("method", name, METHODS)
    return METHODS[name]
