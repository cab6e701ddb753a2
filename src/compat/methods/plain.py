"""Plain supervised training: label-smoothed cross-entropy on the model's own classifier (FCT code)."""

from ..losses import CrossEntropy
from .registry import TrainingContext, register_method


@register_method("plain", needs_parent=False)
def terms(ctx: TrainingContext):
    return [CrossEntropy(ctx.spec.train.label_smoothing)]
