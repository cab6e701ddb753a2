"""SimCLR, FCT's side-information model: NT-Xent on two augmented views of each image, no labels,
through a projection head that training discards (Chen et al., ICML 2020, Sec. 2.1): the stored
side-information is the embedding before the head."""

from dataclasses import dataclass

from ..augment import simclr_view
from ..errors import check_range
from ..losses import NTXent, projection_head
from .registry import MethodOptions, TrainingContext, register_method


@dataclass(frozen=True)
class SimCLROptions(MethodOptions):
    """SimCLR's options. :param temperature: of the NT-Xent loss."""

    temperature: float = 0.1

    def __post_init__(self) -> None:
        check_range("temperature", self.temperature, 0, 10, low_open=True)


@register_method("simclr", SimCLROptions, needs_parent=False, views=simclr_view, num_views=2)
def terms(ctx: TrainingContext):
    return [NTXent(ctx.spec.method.temperature, head=projection_head(ctx.spec.model.embedding_dim))]
