"""SimCLR, FCT's side-information model: NT-Xent on two augmented views of each image, no labels,
through a projection head that training discards (Chen et al., ICML 2020, Sec. 2.1): the stored
side-information is the embedding before the head."""

from ..augment import simclr_view
from ..losses import NTXent, projection_head
from .registry import TrainingContext, register_method


@register_method("simclr", needs_parent=False, views=simclr_view, num_views=2)
def terms(ctx: TrainingContext):
    return [NTXent(ctx.spec.method.temperature, head=projection_head(ctx.spec.model.embedding_dim))]
