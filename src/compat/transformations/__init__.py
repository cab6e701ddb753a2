"""Forward transformations from stored vectors into a new model's space: the registry, FCT's architecture, training
and the gallery upgrade (see :mod:`.registry` to add one)."""

from .fct import FCTTransformation
from .registry import TRANSFORMATIONS, VectorTransformation, build_transformation, register_transformation
from .training import TransformationConfig, fit_transformation, freeze_batchnorm, upgrade_gallery

__all__ = [
    "TRANSFORMATIONS",
    "FCTTransformation",
    "TransformationConfig",
    "VectorTransformation",
    "build_transformation",
    "fit_transformation",
    "freeze_batchnorm",
    "register_transformation",
    "upgrade_gallery",
]
