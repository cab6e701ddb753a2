"""Loss terms of the training loop, each with its paper and equation.

A term is called with the step's outputs and returns a weighted scalar; the loop sums
the terms. Frozen models and classifiers live inside the terms as buffers without gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError, check_choice, check_range


@dataclass
class StepOutputs:
    """What one training step produced.

    :param images: the augmented, normalized input batch (B x 3 x H x W); None for a term that couples the
        batch in a multi-process run.
    :param labels: class labels in the new model's classifier space (B).
    :param embedding: the new model's embeddings (B x D).
    :param logits: the new model's classifier outputs (B x C).
    """

    images: torch.Tensor | None
    labels: torch.Tensor
    embedding: torch.Tensor
    logits: torch.Tensor


class LossTerm(nn.Module):
    """A named, weighted loss term. ``classifies``: it trains the model's classifier (the loop then reports accuracy).

    A term may define ``start_epoch(epoch, epochs, current_embeddings)``: the loop calls it before each epoch
    with a function that embeds the (un-augmented) training images with the model as it is then, and
    ``epoch_figures() -> dict``: what it returns joins the epoch's log entry (a multi-process run averages it).
    ``couples_batch``: its value depends on the whole batch, not on each image alone (contrastive
    negatives); in a multi-process run it sees every rank's rows (its ``images`` are then None).
    """

    name = "loss"
    classifies = False
    couples_batch = False
    stateful = False  # holds state a resumed run needs (beyond trainable parameters): saved in checkpoints

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
    couples_batch = True

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


PROTOTYPE_FORMS = ("unit", "raw")  # UniBCT's prototypes: means of L2-normalized or of raw old embeddings


def refine_prototype(old: torch.Tensor, new: torch.Tensor, tau: float = 0.05, diffusion: float = 0.9, normalize: str = "row") -> torch.Tensor:
    """UniBCT's structural prototype refinement of one class (Zhang et al., IJCAI 2022, arXiv 2203.01583;
    the closed form of the MixBCT re-implementation, its "Eq. (9)" and "Eq. (10)").

    A = softmax(N N^T / tau) with self-loops excluded (N: the class's new embeddings, L2-normalized here, so
    that the similarity is a cosine), refined O = (1 - lambda)(I - lambda A)^-1 O, the fixed point of
    F <- lambda A F + (1 - lambda) O; the prototype is the mean of the refined rows.

    With the re-implementation's *column* softmax, 1^T A = 1^T, so 1^T (I - lambda A)^-1 = 1^T / (1 - lambda):
    the mean of the refined rows is exactly the plain mean of O, whatever A is, and refinement changes no
    prototype. With a *row* softmax (each image averages its neighbours, the label-propagation convention)
    the prototype weights each image by how central it is in the new model's neighbourhood graph.

    :param old: n x d old-model embeddings of the class's training images (O).
    :param new: n x d current new-model embeddings of the same images (N).
    :param tau: temperature of the affinities.
    :param diffusion: lambda, how far old features diffuse along the new model's neighbourhood graph (0: plain mean).
    :param normalize: ``column`` (the re-implementation's softmax over dim 0) or ``row`` (over dim 1).
    :return: the d-dimensional prototype.
    """
    check_range("tau", tau, 0, 100, low_open=True)
    check_range("diffusion", diffusion, 0, 1, high_open=True)
    check_choice("affinity normalization", normalize, ("column", "row"))
    if old.shape != new.shape:
        raise ConfigError(f"old and new embeddings of a class must align row by row, got {tuple(old.shape)} and {tuple(new.shape)}")
    n = len(old)
    if n < 2:  # no neighbours to diffuse from
        return old.float().mean(0)
    a = structural_affinity(new, tau)  # n x n, columns sum to 1
    a = a if normalize == "column" else a.T  # the logits are symmetric: the row softmax is the transpose
    refined = (1 - diffusion) * torch.linalg.solve(torch.eye(n, device=a.device) - diffusion * a, old.float())  # n x d
    return refined.mean(0)


def structural_affinity(new: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """A = column-softmax(cos(N_i, N_j) / tau) over j != i: the class's neighbourhood graph in the new space
    (n x n, each column sums to 1, zero diagonal; the re-implementation masks the diagonal with -1e9)."""
    z = F.normalize(new.float(), dim=1)
    logits = (z @ z.T / tau).masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    return torch.softmax(logits, dim=0)


class PrototypeLoss(LossTerm):
    """UniBCT's compatibility term: cross-entropy of the normalized new embedding against the old-model class
    prototypes, logits ``scale * <z / |z|, p_c>`` with no margin (Zhang et al., IJCAI 2022, arXiv 2203.01583;
    the MixBCT re-implementation's ``BCT_FC``: ``F.normalize(x) @ prototypes.T``, then plain cross-entropy).

    Prototypes are the class means over the new training set of the old embeddings, either ``raw`` (MixBCT's
    ``torch.mean(old_vertices, dim=0)``, never re-normalized: the prototype's length acts as the logit scale)
    or ``unit`` (each old embedding L2-normalized first, so that |p_c| <= 1). The term is off (weight 0) before
    ``start``; with ``refine``, the prototypes are recomputed by :func:`refine_prototype` from the current new
    model at the start of each epoch in ``refresh``. Each epoch's unweighted value, as a share of ln C (the
    loss of a uniform guess), is reported by :meth:`epoch_figures`, also while the term is off.

    :param old_embeddings: N x D old-model embeddings of the new training images.
    :param labels: N class labels (0..C-1, the new model's classifier rows).
    :param start: first epoch (0-based) with the term on.
    :param refresh: epochs (0-based) at whose start the refined prototypes are recomputed (``refine`` only).
    :param prototypes: ``raw`` or ``unit`` old embeddings to average.
    :param scale: s, the cosine logits' multiplier (1: none).
    """

    name = "prototype"
    stateful = True  # the refined prototypes

    def __init__(
        self,
        old_embeddings: torch.Tensor,
        labels: torch.Tensor,
        weight: float = 1.0,
        *,
        start: int = 0,
        refine: bool = False,
        refresh: tuple[int, ...] = (),
        tau: float = 0.05,
        diffusion: float = 0.9,
        affinity: str = "row",
        prototypes: str = "unit",
        scale: float = 1.0,
    ) -> None:
        super().__init__(weight)
        check_choice("prototypes", prototypes, PROTOTYPE_FORMS)
        check_range("prototype scale", scale, 0, 1000, low_open=True)
        old = old_embeddings.detach().float()
        old = F.normalize(old, dim=1) if prototypes == "unit" else old
        labels = torch.as_tensor(labels, dtype=torch.long)
        if len(old) != len(labels):
            raise ConfigError(f"{len(old)} old embeddings but {len(labels)} labels")
        self.register_buffer("old", old)  # N x D
        self.register_buffer("labels", labels)  # N
        classes = int(labels.max()) + 1
        prototypes = torch.zeros(classes, old.shape[1]).index_add_(0, labels, old) / torch.bincount(labels, minlength=classes)[:, None]
        self.register_buffer("prototypes", prototypes)  # C x D, plain class means
        self.start, self.refine, self.refresh = start, refine, tuple(refresh)
        self.tau, self.diffusion, self.affinity = tau, diffusion, affinity
        self.scale = scale
        self.active = start == 0
        self.refreshed: list[int] = []
        self._sum, self._steps = 0.0, 0  # this epoch's unweighted values

    def start_epoch(self, epoch: int, epochs: int, current_embeddings) -> None:
        self.active = epoch >= self.start
        self._sum, self._steps = 0.0, 0
        if self.refine and epoch in self.refresh:
            new = torch.as_tensor(current_embeddings(), device=self.old.device).float()  # N x D
            self.prototypes = torch.stack(
                [
                    refine_prototype(self.old[self.labels == c], new[self.labels == c], self.tau, self.diffusion, self.affinity)
                    for c in range(len(self.prototypes))
                ]
            )
            self.refreshed.append(epoch)

    def forward(self, out: StepOutputs) -> torch.Tensor:
        z = F.normalize(out.embedding.float(), dim=1)
        logits = self.scale * (z @ self.prototypes.T)  # B x C
        loss = F.cross_entropy(logits, out.labels)
        self._sum, self._steps = self._sum + float(loss.detach()), self._steps + 1
        return (self.weight if self.active else 0.0) * loss

    def epoch_figures(self) -> dict[str, float]:
        """The epoch's mean unweighted prototype loss over ln C: 1 is a uniform guess over the C prototypes."""
        if not self._steps:
            return {}
        return {"prototype_share_of_ln_c": self._sum / self._steps / math.log(len(self.prototypes))}


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
