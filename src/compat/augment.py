"""Batch augmentation and normalization on whole uint8 tensors (no per-image PIL work).

Random crop with zero padding plus horizontal flip, the standard CIFAR recipe, done as
tensor indexing on a batch, so the same code feeds a CPU or a GPU at full speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# per-channel statistics of the Tiny-ImageNet-200 training images (64x64), on a 0..1 scale
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2770, 0.2691, 0.2821)


def to_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 B x 3 x H x W -> normalized float B x 3 x H x W in channels_last memory."""
    mean = torch.tensor(MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=batch.device).view(1, 3, 1, 1)
    x = (batch.float() / 255 - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


def random_crop_flip(batch: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of a uint8 B x 3 x H x W batch shifted by up to ``padding`` pixels (zero fill) and flipped with p=1/2."""
    b, _, h, w = batch.shape
    if padding > 0:
        padded = F.pad(batch, (padding, padding, padding, padding))  # B x 3 x (H+2p) x (W+2p)
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(batch.device)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(batch.device)
        rows = (oy[:, None] + torch.arange(h, device=batch.device))[:, :, None]  # B x H x 1
        cols = (ox[:, None] + torch.arange(w, device=batch.device))[:, None, :]  # B x 1 x W
        batch = padded[torch.arange(b, device=batch.device)[:, None, None], :, rows, cols]  # B x H x W x 3
        batch = batch.permute(0, 3, 1, 2)  # B x 3 x H x W
    flip = (torch.rand(b, generator=generator) < 0.5).to(batch.device)
    return torch.where(flip[:, None, None, None], batch.flip(3), batch)
