"""Plain supervised training: label-smoothed cross-entropy on the model's own classifier (FCT code)."""

from dataclasses import dataclass

from ..losses import CrossEntropy
from .registry import MethodOptions, TrainingContext, register_method


@dataclass(frozen=True)
class PlainOptions(MethodOptions):
    """Plain training has no options: cross-entropy only."""


@register_method("plain", PlainOptions, needs_parent=False)
def terms(ctx: TrainingContext):
    return [CrossEntropy(ctx.spec.train.label_smoothing)]
