"""A small many-class image set generated in code, for unit tests and smoke runs.

Each class is a fixed random low-frequency colour pattern; each image is its class
pattern, randomly shifted, with pixel noise. A tiny network separates the classes in
a few epochs, so smoke runs exercise the whole pipeline in seconds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import check_range
from .imageset import Dataset, ImageSet


def _class_patterns(num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """num_classes x size x size x 3 float patterns in [0, 255], smooth 4x4 grids upsampled."""
    coarse = torch.from_numpy(rng.uniform(0, 255, size=(num_classes, 3, 4, 4)).astype(np.float32))
    fine = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return fine.permute(0, 2, 3, 1).numpy()


def _sample(patterns: np.ndarray, per_class: int, noise: float, rng: np.random.Generator) -> ImageSet:
    num_classes, size = patterns.shape[0], patterns.shape[1]
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
    shifts = rng.integers(-size // 8, size // 8 + 1, size=(len(labels), 2))
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i, (label, (dy, dx)) in enumerate(zip(labels, shifts)):
        img = np.roll(patterns[label], (int(dy), int(dx)), axis=(0, 1))
        img = img + rng.normal(0, noise, size=img.shape)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return ImageSet(images, labels)


def make_synthetic(
    num_classes: int = 20,
    train_per_class: int = 40,
    val_per_class: int = 10,
    image_size: int = 32,
    noise: float = 40.0,
    seed: int = 0,
) -> Dataset:
    """Build a synthetic :class:`Dataset`; the same arguments always give the same pixels.

    :param num_classes: number of classes (>= 2).
    :param train_per_class: training images per class (>= 1).
    :param val_per_class: validation images per class (>= 1).
    :param image_size: side of the square images in pixels (>= 8).
    :param noise: standard deviation of the per-pixel Gaussian noise, in grey levels.
    :param seed: random seed.
    """
    check_range("num_classes", num_classes, 2)
    check_range("train_per_class", train_per_class, 1)
    check_range("val_per_class", val_per_class, 1)
    check_range("image_size", image_size, 8)
    check_range("noise", noise, 0)
    rng = np.random.default_rng(seed)
    patterns = _class_patterns(num_classes, image_size, rng)
    train = _sample(patterns, train_per_class, noise, rng)
    val = _sample(patterns, val_per_class, noise, rng)
    ids = tuple(f"syn{c:03d}" for c in range(num_classes))
    names = tuple(f"synthetic class {c}" for c in range(num_classes))
    return Dataset("synthetic", train, val, ids, names)
