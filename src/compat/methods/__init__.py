"""Training methods, registered by name (as backbones are): each says whether it trains against a
parent (old) model and contributes its loss terms to the one training loop.

A method module declares ``@register_method("name", needs_parent=...)`` on a function
``terms(context) -> list[LossTerm]``; :class:`TrainingContext` hands it the parent model and
the parent's embeddings of the training rows without the method importing the store. Adding a
method is one new module here, imported below.
"""

from __future__ import annotations

from . import bct, l2, plain, simclr, unibct  # noqa: F401  (registers the methods)
from .registry import METHODS, Method, TrainingContext, get_method, register_method

__all__ = ["METHODS", "Method", "TrainingContext", "get_method", "register_method"]
