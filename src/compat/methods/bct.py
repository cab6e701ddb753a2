"""BCT: cross-entropy plus the influence loss of the frozen old classifier, with synthesized rows for
the classes the old model never saw (Shen et al., CVPR 2020; openBCT)."""

import torch

from ..losses import CrossEntropy, InfluenceLoss, synthesize_classifier
from .registry import TrainingContext, register_method


@register_method("bct", needs_parent=True)
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
