"""The registry of forward-transformation architectures: h(old embedding, side-information) -> new embedding.

A transformation is one registered module: a subclass of :class:`VectorTransformation` whose constructor takes
``(old_dim, side_dim, new_dim, config)`` (the :class:`~compat.transformations.training.TransformationConfig`),
registered under a name that ``transformation.kind`` selects. Training (:func:`~compat.transformations.training.
fit_transformation`), storage and the gallery upgrade work on any of them. FCT's is :mod:`.fct`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError, check_choice, check_range

TRANSFORMATIONS: dict[str, type[VectorTransformation]] = {}


class VectorTransformation(nn.Module):
    """A map from stored vectors (N x d_old embeddings and N x d_side side-information) to N x d_new embeddings."""

    def __init__(self, old_dim: int, side_dim: int, new_dim: int) -> None:
        super().__init__()
        for name, value in (("old_dim", old_dim), ("side_dim", side_dim), ("new_dim", new_dim)):
            check_range(name, value, 1, 65_536)
        self.old_dim, self.side_dim, self.new_dim = old_dim, side_dim, new_dim

    def check_inputs(self, old: torch.Tensor | np.ndarray, side: torch.Tensor | np.ndarray) -> None:
        """One clear error for inputs that are not N x d_old and N x d_side vectors."""
        if old.ndim != 2 or old.shape[1] != self.old_dim:
            raise ConfigError(f"old embeddings must be N x {self.old_dim} vectors, got shape {tuple(old.shape)}")
        if side.ndim != 2 or side.shape[1] != self.side_dim:
            raise ConfigError(f"side-information must be N x {self.side_dim} vectors, got shape {tuple(side.shape)}")
        if len(old) != len(side):
            raise ConfigError(f"{len(old)} old embeddings but {len(side)} side-information rows")


def register_transformation(name: str) -> Callable[[type[VectorTransformation]], type[VectorTransformation]]:
    """Class decorator: make a :class:`VectorTransformation` selectable as ``transformation.kind=name``."""

    def register(cls: type[VectorTransformation]) -> type[VectorTransformation]:
        if not (isinstance(cls, type) and issubclass(cls, VectorTransformation)):
            raise ConfigError(f"transformation {name!r} must be a VectorTransformation subclass, got {cls!r}")
        if name in TRANSFORMATIONS and TRANSFORMATIONS[name] is not cls:
            raise ConfigError(f"transformation {name!r} is already registered ({TRANSFORMATIONS[name].__name__})")
        TRANSFORMATIONS[name] = cls
        return cls

    return register


def build_transformation(config, old_dim: int, side_dim: int, new_dim: int) -> VectorTransformation:
    """A fresh (untrained) transformation of ``config.kind`` for these dimensions."""
    check_choice("transformation kind", config.kind, TRANSFORMATIONS)
    return TRANSFORMATIONS[config.kind](old_dim, side_dim, new_dim, config)
