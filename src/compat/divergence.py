"""The divergence watch of a training loop: a NaN or infinite loss stops the run at once, and a finished run whose
accuracy sits at chance while its loss rose is marked as diverged (the budget and the tables report it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .errors import CompatError


class TrainingDiverged(CompatError):
    """The loss became NaN or infinite: training stopped at once."""


def check_finite(loss: torch.Tensor, values: Mapping[str, torch.Tensor], *, desc: str, epoch: int, step: int, lr: float, base_lr: float) -> None:
    """Raise :class:`TrainingDiverged` when ``loss`` (the sum of the terms ``values``) is not finite, naming the
    0-based ``epoch`` and ``step`` (printed 1-based), the terms and the learning rate ``lr`` of peak ``base_lr``."""
    if torch.isfinite(loss):
        return
    terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in values.items())
    raise TrainingDiverged(
        f"{desc}: the loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1} (terms: {terms}); "
        f"the learning rate was {lr:.4g} (lr={base_lr}): lower lr, or the weight of the largest term"
    )


def chance_accuracy(labels: np.ndarray) -> float:
    """Training accuracy of always guessing the most frequent class."""
    return float(np.bincount(np.asarray(labels)).max() / len(labels))


def divergence_verdict(log: Sequence[Mapping], labels: np.ndarray, classifies: bool) -> str | None:
    """Why a finished run counts as diverged, or None: a classifying run whose last epoch's training accuracy
    (``train_acc``) is within 1.5x chance while its summed loss (the ``loss_*`` entries) ended above its first epoch's."""
    final_acc = log[-1]["train_acc"] if log else None
    if not classifies or final_acc is None or len(log) < 2:
        return None
    chance = chance_accuracy(labels)
    losses = [sum(v for k, v in e.items() if k.startswith("loss_")) for e in log]
    if final_acc <= 1.5 * chance and losses[-1] > losses[0]:
        return (
            f"final training accuracy {final_acc:.4f} is at chance level ({chance:.4f}) and the loss rose "
            f"from {losses[0]:.4g} (epoch 1) to {losses[-1]:.4g}"
        )
    return None
