"""In-memory image sets: uint8 HxWx3 arrays with integer labels, as every model and split sees them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """Images and labels of one part of a dataset (train or val).

    :param images: N x H x W x 3 uint8 array (often a read-only memory map).
    :param labels: N int64 class indices into the dataset's class list.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be N x H x W x 3 uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The rows at ``indices``, copied into memory."""
        return ImageSet(np.ascontiguousarray(self.images[indices]), self.labels[indices])


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset with a train and a val part sharing one class list.

    :param name: registry name (``tiny-imagenet`` or ``synthetic``).
    :param class_ids: stable class identifiers (WordNet ids for Tiny-ImageNet), index = label.
    :param class_names: human-readable names, index = label.
    """

    name: str
    train: ImageSet
    val: ImageSet
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def image_size(self) -> int:
        return self.train.image_size
