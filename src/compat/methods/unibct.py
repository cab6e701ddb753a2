"""UniBCT: cross-entropy plus the old-class-prototype loss, prototypes optionally refined by structural
prototype refinement (Zhang et al., "Towards Universal Backward-Compatible Representation Learning",
IJCAI 2022, arXiv 2203.01583). No code by the authors; the schedule follows the MixBCT re-implementation
(``BCT_Methods/UniBCT``), scaled to our epochs: the term is off for the first 10 of 35 epochs and the
refined prototypes are recomputed at the start of epochs 10 and 20 (``from_start``: the term on from epoch 0,
the schedule control, with the same refreshes)."""

from dataclasses import dataclass

import torch

from ..errors import check_choice, check_range
from ..losses import PROTOTYPE_FORMS, CrossEntropy, PrototypeLoss
from .registry import MethodOptions, TrainingContext, register_method

START_SHARE = 10 / 35  # the re-implementation: on from epoch 10 of 35
REFRESH_SHARES = (10 / 35, 20 / 35)  # refined prototypes recomputed at the start of epochs 10 and 20 of 35


def schedule(epochs: int) -> tuple[int, tuple[int, ...]]:
    """(first epoch with the term on, epochs that refresh the prototypes), 0-based, for a run of ``epochs``."""
    start = int(round(START_SHARE * epochs))
    refresh = tuple(sorted({int(round(s * epochs)) for s in REFRESH_SHARES} - {epochs}))
    return start, refresh


def plain_until(method, epochs: int) -> int:
    """The epochs before the prototype term switches on: until then UniBCT trains as plain training."""
    return 0 if method.from_start else schedule(epochs)[0]


@dataclass(frozen=True)
class UniBCTOptions(MethodOptions):
    """UniBCT's options.

    :param weight: lambda of the prototype (compatibility) loss.
    :param refine: structural prototype refinement (False: plain class-mean prototypes throughout).
    :param tau: temperature of the refinement's affinities (0.05 in the re-implementation).
    :param diffusion: lambda of the refinement (0.9 in the re-implementation).
    :param affinity: ``row`` or ``column`` softmax of the refinement's affinities (the re-implementation's
        ``column`` leaves every prototype equal to the plain mean; see :func:`compat.losses.refine_prototype`).
    :param prototypes: class means of the ``unit`` (L2-normalized) or ``raw`` old embeddings (MixBCT's
        ``torch.mean(old_vertices, dim=0)``, whose length acts as a logit scale).
    :param scale: s of the cosine logits ``s * <z / |z|, p_c>`` (1: none).
    :param from_start: the prototype term on from epoch 0 (the schedule control), not from the
        re-implementation's epoch 10 of 35 (:func:`schedule`); refreshes unchanged.
    """

    weight: float = 1.0
    refine: bool = False
    tau: float = 0.05
    diffusion: float = 0.9
    affinity: str = "row"
    prototypes: str = "unit"
    scale: float = 1.0
    from_start: bool = False

    def __post_init__(self) -> None:
        self._check_weight()
        check_range("tau", self.tau, 0, 100, low_open=True)
        check_range("diffusion", self.diffusion, 0, 1, high_open=True)
        check_choice("affinity", self.affinity, ("row", "column"))
        check_choice("prototypes", self.prototypes, PROTOTYPE_FORMS)
        check_range("prototype scale", self.scale, 0, 1000, low_open=True)


@register_method("unibct", UniBCTOptions, needs_parent=True, plain_until=plain_until)
def terms(ctx: TrainingContext):
    m = ctx.spec.method
    position = {int(c): i for i, c in enumerate(ctx.classes)}
    local = torch.tensor([position[int(c)] for c in ctx.labels])
    start, refresh = schedule(ctx.spec.train.epochs)
    start = 0 if m.from_start else start
    prototypes = PrototypeLoss(
        torch.from_numpy(ctx.parent_embeddings()),
        local,
        m.weight,
        start=start,
        refine=m.refine,
        refresh=refresh,
        tau=m.tau,
        diffusion=m.diffusion,
        affinity=m.affinity,
        prototypes=m.prototypes,
        scale=m.scale,
    )
    return [CrossEntropy(ctx.spec.train.label_smoothing), prototypes]
