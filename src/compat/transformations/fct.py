"""FCT's forward transformation h(old embedding, side-info) -> new embedding (registered as ``fct``).

Ramanujan et al., "Forward Compatible Training for Large-Scale Embedding Retrieval Systems",
CVPR 2022 (arXiv 2112.02805), Sec. 3; the architecture of the official code
(apple/ml-fct ``models/transformations.py:MLP_BN_SIDE_PROJECTION``): an old branch and a side branch of
Linear + BatchNorm + ReLU blocks, concatenated and mixed by an MLP. Without side-information the official
code feeds the old embedding into both branches; so do we (the side input *is* the old embedding).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import VectorTransformation, register_transformation
from .training import TransformationConfig


def _block(d_in: int, d_out: int) -> nn.Sequential:
    """Linear (no bias) + BatchNorm + ReLU: the official ConvBlock on N x C x 1 x 1 tensors."""
    return nn.Sequential(nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True))


@register_transformation("fct")
class FCTTransformation(VectorTransformation):
    """h(old, side): old branch d_old -> 2 d_old -> 2 d_new, side branch d_side -> 2 d_side -> 2 d_new,
    concatenated (4 d_new) and mixed: -> inner -> inner -> d_new (the last layer a plain linear map with bias);
    inner is ``config.inner_dim`` (2048 in the official configs)."""

    def __init__(self, old_dim: int, side_dim: int, new_dim: int, config: TransformationConfig) -> None:
        super().__init__(old_dim, side_dim, new_dim)
        inner_dim = config.inner_dim
        self.old_branch = nn.Sequential(_block(old_dim, 2 * old_dim), _block(2 * old_dim, 2 * new_dim))
        self.side_branch = nn.Sequential(_block(side_dim, 2 * side_dim), _block(2 * side_dim, 2 * new_dim))
        self.mixer = nn.Sequential(_block(4 * new_dim, inner_dim), _block(inner_dim, inner_dim), nn.Linear(inner_dim, new_dim))

    def forward(self, old: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        self.check_inputs(old, side)
        return self.mixer(torch.cat([self.old_branch(old), self.side_branch(side)], dim=1))  # N x d_new
