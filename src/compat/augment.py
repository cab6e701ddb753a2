"""Batch augmentation and normalization on whole uint8 tensors (no per-image PIL work).

Random crop with zero padding plus horizontal flip, the standard CIFAR recipe, done as
tensor indexing on a batch, so the same code feeds a CPU or a GPU at full speed; and the
SimCLR views (random resized crop, flip, colour jitter, grayscale) as batched tensor ops.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# per-channel statistics of the Tiny-ImageNet-200 training images (64x64), on a 0..1 scale
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2770, 0.2691, 0.2821)
# ITU-R 601 luma weights (as PIL's grayscale), one row per output channel
LUMA = ((0.299, 0.587, 0.114),) * 3


def to_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 B x 3 x H x W -> normalized float B x 3 x H x W in channels_last memory."""
    return _standardize(batch.float() / 255)


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Float RGB on a 0..1 scale -> per-channel standardized, channels_last."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def random_crop_flip(
    batch: torch.Tensor, padding: int, generator: torch.Generator, fill: str = "zero", flips: torch.Tensor | None = None
) -> torch.Tensor:
    """Each image of a uint8 B x 3 x H x W batch shifted by up to ``padding`` pixels and flipped.

    :param fill: the border the shift reveals: ``zero`` (the CIFAR recipe) or ``reflect`` (airbench).
    :param flips: B booleans, which images to flip (airbench's alternating flips); default: each with p = 1/2.
    """
    b, _, h, w = batch.shape
    if padding > 0:
        if fill == "reflect":  # reflection padding is defined on float tensors only; uint8 values survive the round trip
            padded = F.pad(batch.float(), (padding,) * 4, mode="reflect").to(batch.dtype)
        else:
            padded = F.pad(batch, (padding, padding, padding, padding))  # B x 3 x (H+2p) x (W+2p)
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(batch.device)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(batch.device)
        rows = (oy[:, None] + torch.arange(h, device=batch.device))[:, :, None]  # B x H x 1
        cols = (ox[:, None] + torch.arange(w, device=batch.device))[:, None, :]  # B x 1 x W
        batch = padded[torch.arange(b, device=batch.device)[:, None, None], :, rows, cols]  # B x H x W x 3
        batch = batch.permute(0, 3, 1, 2)  # B x 3 x H x W
    flip = (torch.rand(b, generator=generator) < 0.5) if flips is None else flips
    return torch.where(flip.to(batch.device)[:, None, None, None], batch.flip(3), batch)


def alternating_flips(first: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench's alternating flips (Jordan 2024, Sec. 3.6): ``first`` (N booleans, drawn once) in even epochs,
    their opposite in odd ones, so every image is seen both ways every two epochs."""
    return first ^ bool(epoch % 2)


def simclr_view(batch: torch.Tensor, generator: torch.Generator, min_scale: float = 0.2) -> torch.Tensor:
    """One SimCLR view of a uint8 B x 3 x H x W batch, as normalized float input.

    Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
    ICML 2020, Appendix A: random resized crop (area ``min_scale``..1, aspect 3/4..4/3) with
    flip, colour jitter (brightness, contrast, saturation 0.4, hue left out) with p = 0.8,
    grayscale with p = 0.2. Each image draws its own parameters; the crop is one batched
    ``grid_sample``, the colour changes two batched 3x3 matrix products.
    """
    b, _, h, w = batch.shape
    dev = batch.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(b, generator=generator)).to(dev)

    area = uniform(min_scale, 1.0)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # crop width / image width
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx, cy = (1 - sx) * (2 * uniform(0, 1) - 1), (1 - sy) * (2 * uniform(0, 1) - 1)  # crop centre, inside the image
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, cx, sy, cy
    grid = F.affine_grid(theta, (b, 3, h, w), align_corners=False)
    x = F.grid_sample(batch.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)  # 0..255

    # colour jitter then grayscale as two per-image 3x3 colour maps (two passes instead of ~30 elementwise ones):
    # brightness b, contrast c (around the image mean m), saturation s (around luma, weights w summing to 1)
    # compose to y = c b S x + (1 - c) b m, S = s I + (1 - s) 1 w^T; images without jitter get y = x
    jitter = uniform(0, 1) < 0.8
    brightness, contrast, saturation = (uniform(0.6, 1.4) for _ in range(3))
    gray = uniform(0, 1) < 0.2
    eye = torch.eye(3, device=dev).expand(b, 3, 3)
    luma = torch.tensor(LUMA, device=dev).expand(b, 3, 3)  # every row w: luma in all three channels
    sat = saturation.view(b, 1, 1)
    gain = torch.where(jitter, contrast * brightness, 1.0).view(b, 1, 1) / 255
    colour = gain * torch.where(jitter.view(b, 1, 1), sat * eye + (1 - sat) * luma, eye)  # B x 3 x 3
    mean = x.mean(dim=(1, 2, 3)) / 255  # B
    offset = torch.where(jitter, (1 - contrast) * brightness * mean, 0.0).view(b, 1, 1)
    flat = x.reshape(b, 3, h * w)
    y = (torch.bmm(colour, flat) + offset).clamp_(0, 1)  # B x 3 x HW, on a 0..1 scale
    std = torch.tensor(STD, device=dev).view(1, 3, 1)
    finish = torch.where(gray.view(b, 1, 1), luma, eye) / std  # grayscale, then per-channel standardization
    out = torch.bmm(finish, y) - torch.tensor(MEAN, device=dev).view(1, 3, 1) / std
    return out.view(b, 3, h, w).contiguous(memory_format=torch.channels_last)


def fixed_view(images: np.ndarray, view: int, padding: int, chunk: int = 4096) -> np.ndarray:
    """Augmented view number ``view`` of uint8 N x H x W x 3 ``images``: the training crop + flip, drawn
    from a generator seeded by ``view``, so that every model embeds the very same augmented images."""
    generator = torch.Generator().manual_seed(1_000_003 * view)
    out = np.empty_like(images)
    for start in range(0, len(images), chunk):
        batch = torch.from_numpy(np.array(images[start : start + chunk])).permute(0, 3, 1, 2)  # B x 3 x H x W
        out[start : start + chunk] = random_crop_flip(batch, padding, generator).permute(0, 2, 3, 1).numpy()
    return out
