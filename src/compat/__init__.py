"""compat: compatible representation learning for model upgrades in image retrieval.

A shared package behind the book that reproduces BCT, FCT, UniBCT and BiCT on
Tiny-ImageNet-200: data, splits, models, training, losses and evaluators.
"""

__version__ = "0.1.0"
