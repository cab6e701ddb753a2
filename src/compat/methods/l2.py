"""The L2 compatibility baseline: MSE to the frozen old model's normalized embedding of the same image,
with the new model's cross-entropy (OpenCompatible) or without it (openBCT ``--l2``: ``keep_ce=False``)."""

from dataclasses import dataclass

from ..errors import ConfigError
from ..losses import CrossEntropy, L2Compatibility
from .registry import MethodOptions, TrainingContext, register_method


@dataclass(frozen=True)
class L2Options(MethodOptions):
    """The L2 baseline's options.

    :param weight: of the L2 compatibility term.
    :param keep_ce: keep the new model's own cross-entropy (OpenCompatible) or drop it (openBCT ``--l2``).
    """

    weight: float = 1.0
    keep_ce: bool = True

    def __post_init__(self) -> None:
        self._check_weight()
        if self.weight == 0 and not self.keep_ce:
            raise ConfigError("method 'l2' with weight 0 and keep_ce=False has no loss left to train on; set a weight above 0 or keep_ce=True")


@register_method("l2", L2Options, needs_parent=True)
def terms(ctx: TrainingContext):
    m = ctx.spec.method
    ce = [CrossEntropy(ctx.spec.train.label_smoothing)] if m.keep_ce else []
    return ce + [L2Compatibility(ctx.parent_model(), m.weight)]
