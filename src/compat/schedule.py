"""The learning-rate schedule every training loop here follows: linear warm-up, then cosine decay to zero, per step
(FCT's ``trainers`` and airbench alike)."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Share of the peak learning rate at ``step``: linear warm-up over ``warmup`` steps, then cosine to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate to ``lr`` times the group's ``lr_scale`` (1 where it has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
