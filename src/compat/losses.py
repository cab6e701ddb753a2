"""Loss terms of the training loop, each with its paper and equation.

A term is called with the step's outputs and returns a weighted scalar; the loop sums
the terms. Frozen models and classifiers live inside the terms as buffers without gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError, check_range


@dataclass
class StepOutputs:
    """What one training step produced.

    :param images: the augmented, normalized input batch (B x 3 x H x W).
    :param labels: class labels in the new model's classifier space (B).
    :param embedding: the new model's embeddings (B x D).
    :param logits: the new model's classifier outputs (B x C).
    """

    images: torch.Tensor
    labels: torch.Tensor
    embedding: torch.Tensor
    logits: torch.Tensor


class LossTerm(nn.Module):
    """A named, weighted loss term. ``classifies``: it trains the model's classifier (the loop then reports accuracy)."""

    name = "loss"
    classifies = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        check_range(f"{self.name} weight", weight, 0)
        self.weight = weight


class CrossEntropy(LossTerm):
    """Cross-entropy with label smoothing on the model's own classifier (Szegedy et al., CVPR 2016, Sec. 7)."""

    name = "ce"
    classifies = True

    def __init__(self, label_smoothing: float = 0.1, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.label_smoothing = label_smoothing

    def forward(self, out: StepOutputs) -> torch.Tensor:
        return self.weight * F.cross_entropy(out.logits.float(), out.labels, label_smoothing=self.label_smoothing)


class InfluenceLoss(LossTerm):
    """BCT influence loss: the frozen old classifier scores the new embedding.

    Shen et al., "Towards Backward-Compatible Representation Learning", CVPR 2020 (arXiv 2003.11942):
    L = L_new(w_new, phi_new) + lambda * L_old(w_old, phi_new) (the influence loss; the paper's
    equation number is not verified here). Rows of classes the old model never saw are synthesized
    as the mean old-model embedding of that class over the new training set (openBCT issue #1).

    :param classifier: C x D influence classifier, old rows then synthesized rows, indexed by ``labels``.
    :param normalize: L2-normalize embedding and classifier rows (cosine logits, no scale; the BT-2 code).
    :param label_smoothing: of this cross-entropy term.
    """

    name = "influence"

    def __init__(self, classifier: torch.Tensor, weight: float = 1.0, normalize: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__(weight)
        self.register_buffer("classifier", classifier.detach().float().clone())  # C x D, never trained
        self.normalize = normalize
        self.label_smoothing = label_smoothing

    def forward(self, out: StepOutputs) -> torch.Tensor:
        z, w = out.embedding.float(), self.classifier
        if z.shape[1] != w.shape[1]:
            raise ConfigError(f"new embedding is {z.shape[1]}-d but the old classifier is {w.shape[1]}-d")
        if self.normalize:
            z, w = F.normalize(z, dim=1), F.normalize(w, dim=1)
        logits = z @ w.T  # B x C
        return self.weight * F.cross_entropy(logits, out.labels, label_smoothing=self.label_smoothing)


class L2Compatibility(LossTerm):
    """L2 compatibility baseline of BCT (Shen et al., CVPR 2020; openBCT ``--l2``, OpenCompatible ``l2``):
    ``nn.MSELoss()`` (mean over batch and dimensions, the references' default reduction) between the
    L2-normalized new and old embeddings of the same images, old model frozen in eval mode.
    """

    name = "l2"

    def __init__(self, old_model: nn.Module, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.old_model = old_model.eval()
        for p in self.old_model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # the old model stays in eval mode
        super().train(mode)
        self.old_model.eval()
        return self

    def forward(self, out: StepOutputs) -> torch.Tensor:
        with torch.no_grad():
            old = self.old_model.embed(out.images).float()  # B x D
        new = out.embedding.float()
        if new.shape[1] != old.shape[1]:
            raise ConfigError(f"new embedding is {new.shape[1]}-d but the old one is {old.shape[1]}-d")
        return self.weight * F.mse_loss(F.normalize(new, dim=1), F.normalize(old, dim=1))


class NTXent(LossTerm):
    """SimCLR's contrastive loss (NT-Xent), Chen et al., ICML 2020, Eq. (1), averaged over all 2N anchors.

    The batch holds two views of N images, view 1 rows then view 2 rows; each row's positive is
    the other view of its image and its negatives are the other 2N - 2 rows: a cross-entropy over
    the cosine similarities / temperature, self-similarity masked out. Written here because
    pytorch-metric-learning's ``NTXentLoss`` (the tests' oracle) took 3x a ResNet-20 step on the CPU.
    """

    name = "ntxent"

    def __init__(self, temperature: float = 0.1, weight: float = 1.0, head: nn.Module | None = None) -> None:
        super().__init__(weight)
        check_range("temperature", temperature, 0, 10, low_open=True)
        self.temperature = temperature
        self.head = head  # trained with the model (the loop's optimizer takes every term's trainable parameters)

    def forward(self, out: StepOutputs) -> torch.Tensor:
        z = out.embedding if self.head is None else self.head(out.embedding)
        z = z.float()
        if len(z) % 2:
            raise ConfigError(f"NT-Xent wants two views per image (an even batch), got {len(z)} rows")
        z = F.normalize(z, dim=1)
        logits = (z @ z.T / self.temperature).masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
        positive = (torch.arange(len(z), device=z.device) + len(z) // 2) % len(z)  # row i and row i + N are one image
        return self.weight * F.cross_entropy(logits, positive)


def projection_head(dim: int) -> nn.Module:
    """SimCLR's projection head g: Linear -> ReLU -> Linear, ``dim`` -> ``dim`` -> ``dim`` (Chen et al., ICML 2020, Sec. 2.1)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


def synthesize_classifier(
    old_classifier: torch.Tensor,
    old_classes: Sequence[int],
    old_embeddings: torch.Tensor,
    labels: torch.Tensor,
    new_classes: Sequence[int],
) -> torch.Tensor:
    """BCT's influence classifier: one row per class of the new model. Where the old model knew the
    class, its frozen classifier row; otherwise the mean of the L2-normalized old-model embeddings
    of the class's images in the new training set (openBCT issue #1: "we only generate the new
    classes part"; its ``ClassifierGenerator`` averages the old model's ``F.normalize``-d features).

    :param old_classifier: C_old x D weights of the frozen old classifier, row i = class ``old_classes[i]``.
    :param old_classes: global class ids of the old classifier's rows.
    :param old_embeddings: N x D old-model embeddings of the new training set.
    :param labels: N global class ids of those images.
    :param new_classes: global class ids of the new model's classifier rows, in order.
    :return: len(new_classes) x D.
    """
    d = old_classifier.shape[1]
    if old_embeddings.shape[1] != d:
        raise ConfigError(f"old embeddings are {old_embeddings.shape[1]}-d but the old classifier is {d}-d")
    position = {int(c): i for i, c in enumerate(old_classes)}
    rows = []
    for c in new_classes:
        if int(c) in position:
            rows.append(old_classifier[position[int(c)]].float())
            continue
        members = old_embeddings[labels == int(c)]
        if len(members) == 0:
            raise ConfigError(f"class {int(c)} has no images to synthesize its classifier row from")
        rows.append(F.normalize(members.float(), dim=1).mean(0))
    return torch.stack(rows)
