"""BCT: cross-entropy plus the influence loss of the frozen old classifier, with synthesized rows for
the classes the old model never saw (Shen et al., CVPR 2020; openBCT)."""

from dataclasses import dataclass

import torch

from ..errors import check_range
from ..losses import CrossEntropy, InfluenceLoss, synthesize_classifier
from .registry import MethodOptions, TrainingContext, register_method


@dataclass(frozen=True)
class BCTOptions(MethodOptions):
    """BCT's options.

    :param weight: lambda of the influence loss (Shen et al., Eq. 4).
    :param normalize: cosine logits of normalized embedding and classifier rows (the BT-2 code).
    :param label_smoothing: of the influence cross-entropy (openBCT: 0, plain CE; BT-2: 0.1).
    """

    weight: float = 1.0
    normalize: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        self._check_weight()
        check_range("label_smoothing", self.label_smoothing, 0, 1, high_open=True)


@register_method("bct", BCTOptions, needs_parent=True)
def terms(ctx: TrainingContext):
    m = ctx.spec.method
    classifier = synthesize_classifier(
        ctx.parent_model().classifier.weight.detach(),
        ctx.parent_classes(),
        torch.from_numpy(ctx.parent_embeddings()),
        torch.from_numpy(ctx.labels),
        ctx.classes.tolist(),
    )
    return [CrossEntropy(ctx.spec.train.label_smoothing), InfluenceLoss(classifier, m.weight, m.normalize, m.label_smoothing)]
