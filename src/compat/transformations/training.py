"""Training a forward transformation h(old embedding, side-info) -> new embedding, and the gallery upgrade.

The recipe is FCT's (Ramanujan et al., CVPR 2022, arXiv 2112.02805, Sec. 3; apple/ml-fct
``trainers/transformation_trainer.py``): MSE to the frozen new model's embeddings over stored vectors, Adam with
warm-up + cosine, BatchNorm statistics frozen for the second half. It trains any registered architecture
(:mod:`compat.transformations.registry`; ``kind`` in the config), FCT's by default.

The upgrade needs only stored vectors: :func:`upgrade_gallery` takes no image and no image model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..divergence import check_finite
from ..errors import ConfigError, check_choice, check_range
from ..progress import show_progress
from ..schedule import lr_factor, set_learning_rate
from ..store import ADDED_OPTION
from .registry import TRANSFORMATIONS, VectorTransformation


@dataclass(frozen=True)
class TransformationConfig:
    """Architecture and recipe of h (defaults: the official configs, except where a profile says otherwise).

    :param inner_dim: width of the mixer's hidden layers (2048 in the official configs).
    :param epochs: passes over the new training set's stored embeddings (80 in the official configs).
    :param batch_size: rows per step (1024 officially).
    :param lr: peak Adam learning rate (5e-4).
    :param weight_decay: Adam's L2 penalty (2^-15 officially).
    :param warmup_epochs: linear warm-up, then cosine decay to zero (5 of 80 officially).
    :param freeze_bn: BatchNorm in eval mode, its statistics frozen, from half-way (``switch_mode_to_eval``).
    :param augmented_views: stored embeddings of this many augmented views (crop + flip) of each training
        image; epoch e trains on view e mod this (the official trainer runs the frozen models on freshly
        augmented batches every epoch; stored views keep that variety at a fixed embedding cost).
    :param threads: CPU threads of h's training, pinned (as :class:`compat.train.TrainConfig`'s).
    :param kind: the architecture, a name in :data:`compat.transformations.registry.TRANSFORMATIONS` (``fct``:
        FCT's; its ``inner_dim`` is the mixer's width).
    """

    inner_dim: int = 2048
    epochs: int = 80
    batch_size: int = 1024
    lr: float = 5e-4
    weight_decay: float = 2.0**-15
    warmup_epochs: float = 5.0
    freeze_bn: bool = True
    augmented_views: int = 4
    threads: int = field(default=2, metadata=ADDED_OPTION)
    kind: str = field(default="fct", metadata=ADDED_OPTION)

    def __post_init__(self) -> None:
        check_range("inner_dim", self.inner_dim, 1, 65_536)
        check_range("transformation epochs", self.epochs, 1, 10_000)
        check_range("transformation batch_size", self.batch_size, 2, 1 << 20)
        check_range("transformation lr", self.lr, 0, 1, low_open=True)
        check_range("transformation weight_decay", self.weight_decay, 0, 1)
        check_range("transformation warmup_epochs", self.warmup_epochs, 0, self.epochs)
        check_range("transformation augmented_views", self.augmented_views, 1, 64)
        check_range("transformation threads", self.threads, 1, 1024)
        check_choice("transformation kind", self.kind, TRANSFORMATIONS)


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode: running statistics frozen, used for normalization."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _tensors(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays]


def fit_transformation(
    h: VectorTransformation,
    views: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    config: TransformationConfig,
    *,
    seed: int,
    validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    desc: str = "transformation",
    progress: bool | None = None,
) -> dict:
    """Train ``h`` in place: MSE(h(old, side), new) over stored vectors of the new training set.

    :param views: per augmented view of the training images, its (old, side, new) embeddings (N x d each);
        epoch e trains on view e mod len(views).
    :param validation: (old, side, new) embeddings of held-out images: the MSE on them is logged per epoch.
    :param progress: a tqdm bar over epochs (default: as the training loop decides, :func:`compat.progress.show_progress`).
    :return: the training log: per-epoch training and validation MSE, whether BatchNorm was frozen, wall time.
    :raises TrainingDiverged: the MSE became NaN or infinite (the step, epoch and learning rate named).
    """
    if not views:
        raise ConfigError("fit_transformation needs at least one view of (old, side, new) embeddings")
    data = [_tensors(*v) for v in views]
    for old_t, side_t, target_t in data:
        h.check_inputs(old_t, side_t)
        if target_t.shape != (len(old_t), h.new_dim):
            raise ConfigError(f"targets must be {len(old_t)} x {h.new_dim} new embeddings, got shape {tuple(target_t.shape)}")
    val = _tensors(*validation) if validation is not None else None
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(h.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(data[0][0]) // config.batch_size)
    total, warmup = steps_per_epoch * config.epochs, int(round(config.warmup_epochs * steps_per_epoch))
    generator = torch.Generator().manual_seed(seed)
    log, start = [], time.perf_counter()
    for epoch in tqdm(range(config.epochs), desc=desc, disable=not show_progress(progress), leave=False):
        h.train()
        frozen = config.freeze_bn and epoch >= config.epochs // 2
        if frozen:
            freeze_batchnorm(h)
        old_t, side_t, target_t = data[epoch % len(data)]
        order = torch.randperm(len(old_t), generator=generator)
        total_loss = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            lr = config.lr * lr_factor(epoch * steps_per_epoch + step, warmup, total)
            set_learning_rate(optimizer, lr)
            loss = F.mse_loss(h(old_t[idx], side_t[idx]), target_t[idx])
            check_finite(loss, {"mse": loss}, desc=desc, epoch=epoch, step=step, lr=lr, base_lr=config.lr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach())
        entry = {"epoch": epoch + 1, "mse": total_loss / steps_per_epoch, "bn_frozen": frozen, "view": epoch % len(data)}
        if val is not None:
            h.eval()
            with torch.inference_mode():
                entry["val_mse"] = float(F.mse_loss(h(val[0], val[1]), val[2]))
        log.append(entry)
    h.eval()
    return {"epochs": log, "train_seconds": time.perf_counter() - start, "config": asdict(config)}


@torch.inference_mode()
def upgrade_gallery(h: VectorTransformation, old: np.ndarray, side: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """FCT's gallery upgrade: stored (old embedding, side-information) rows -> new-space embeddings.

    Works from the stored N x d_old and N x d_side vectors alone, in batches; no image and no
    image model enters (by the signature), which is what makes it private and cheap.
    """
    h.check_inputs(old, side)
    check_range("batch_size", batch_size, 1)
    h.eval()
    out = np.empty((len(old), h.new_dim), np.float32)  # filled batch by batch: memory is the output plus one batch
    with torch.inference_mode():
        for start in range(0, len(old), batch_size):
            o = torch.from_numpy(np.ascontiguousarray(old[start : start + batch_size], dtype=np.float32))
            s = torch.from_numpy(np.ascontiguousarray(side[start : start + batch_size], dtype=np.float32))
            out[start : start + len(o)] = h(o, s).numpy()
    return out
