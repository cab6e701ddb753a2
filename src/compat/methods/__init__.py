"""Training methods, registered by name (as backbones are): each says whether it trains against a
parent (old) model and contributes its loss terms to the one training loop.

A method module declares its options (a :class:`MethodOptions` dataclass) and
``@register_method("name", Options, needs_parent=...)`` on a function ``terms(context) -> list[LossTerm]``; :class:`TrainingContext` hands it the parent model and
the parent's embeddings of the training rows without the method importing the store. Adding a
method is one new module here, imported below.
"""

from __future__ import annotations

from . import bct, l2, plain, simclr, unibct  # noqa: F401  (registers the methods)
from .bct import BCTOptions
from .l2 import L2Options
from .plain import PlainOptions
from .registry import METHODS, Method, MethodOptions, TrainingContext, get_method, method_options, register_method
from .simclr import SimCLROptions
from .unibct import UniBCTOptions

__all__ = [
    "METHODS",
    "BCTOptions",
    "L2Options",
    "Method",
    "MethodOptions",
    "PlainOptions",
    "SimCLROptions",
    "TrainingContext",
    "UniBCTOptions",
    "get_method",
    "method_options",
    "register_method",
]
