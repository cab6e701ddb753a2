"""The L2 compatibility baseline: MSE to the frozen old model's normalized embedding of the same image,
with the new model's cross-entropy (OpenCompatible) or without it (openBCT ``--l2``: ``keep_ce=False``)."""

from ..losses import CrossEntropy, L2Compatibility
from .registry import TrainingContext, register_method


@register_method("l2", needs_parent=True)
def terms(ctx: TrainingContext):
    m = ctx.spec.method
    ce = [CrossEntropy(ctx.spec.train.label_smoothing)] if m.keep_ce else []
    return ce + [L2Compatibility(ctx.parent_model(), m.weight)]
