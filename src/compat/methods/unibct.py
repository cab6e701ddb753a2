"""UniBCT: cross-entropy plus the old-class-prototype loss, prototypes optionally refined by structural
prototype refinement (Zhang et al., "Towards Universal Backward-Compatible Representation Learning",
IJCAI 2022, arXiv 2203.01583). No code by the authors; the schedule follows the MixBCT re-implementation
(``BCT_Methods/UniBCT``), scaled to our epochs: the term is off for the first 10 of 35 epochs and the
refined prototypes are recomputed at the start of epochs 10 and 20 (``from_start``: the term on from epoch 0,
the schedule control, with the same refreshes)."""

import torch

from ..losses import CrossEntropy, PrototypeLoss
from .registry import TrainingContext, register_method

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


@register_method("unibct", needs_parent=True, plain_until=plain_until)
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
