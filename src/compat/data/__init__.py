"""Datasets: Tiny-ImageNet-200 (real, prepared once into a memory-mapped cache) and a synthetic set.

``load_dataset("tiny-imagenet", image_size=32)`` is what the book's tables use;
``load_dataset("synthetic", ...)`` is what unit tests and smoke runs use.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, check_choice, check_range
from ..paths import data_cache_dir
from .imageset import Dataset, ImageSet
from .prepare import PREPARED_SIZES, damaged_files, is_complete, prepare_tiny_imagenet
from .sources import resolve_source
from .synthetic import make_synthetic

DATASETS = ("tiny-imagenet", "synthetic")

__all__ = ["DATASETS", "DataConfig", "Dataset", "ImageSet", "load_dataset", "make_synthetic", "prepare", "prepared_manifest", "load_tiny_imagenet"]


def prepare(mirror: str | Path | None = None, cache_root: Path | None = None) -> Path:
    """Make sure the Tiny-ImageNet cache exists (verify the source and decode once); return its folder."""
    cache_root = Path(cache_root) if cache_root else data_cache_dir()
    folder = cache_root / "tiny-imagenet-200"
    if is_complete(folder):
        return folder
    source = resolve_source(mirror, download_dir=cache_root / "downloads")
    return prepare_tiny_imagenet(source, cache_root)


def prepared_manifest(cache_root: Path | None = None) -> dict | None:
    """The Tiny-ImageNet cache's manifest (source, checksums, counts, preparation time), or None if not prepared."""
    folder = (Path(cache_root) if cache_root else data_cache_dir()) / "tiny-imagenet-200"
    return json.loads((folder / "manifest.json").read_text()) if is_complete(folder) else None


def load_tiny_imagenet(image_size: int = 32, cache_root: Path | None = None, mirror: str | Path | None = None) -> Dataset:
    """Tiny-ImageNet-200 at ``image_size`` (64 native, 32 downsampled), memory-mapped read-only."""
    check_choice("image_size", image_size, PREPARED_SIZES)
    folder = prepare(mirror, cache_root)
    needed = [f"{part}_{image_size}.npy" for part in ("train", "val")] + ["train_labels.npy", "val_labels.npy", "classes.json"]
    damaged = damaged_files(folder, needed)
    if damaged:
        warnings.warn(
            f"data cache files {', '.join(map(str, damaged))} do not match the sha256 of their manifest: preparing the cache again", stacklevel=2
        )
        shutil.rmtree(folder)
        folder = prepare(mirror, cache_root)
        if damaged := damaged_files(folder, needed):
            raise DataError(f"freshly prepared data cache files {', '.join(map(str, damaged))} do not match their sha256")

    def part(name: str) -> ImageSet:
        images = np.load(folder / f"{name}_{image_size}.npy", mmap_mode="r")
        return ImageSet(images, np.load(folder / f"{name}_labels.npy"))

    classes = json.loads((folder / "classes.json").read_text())
    return Dataset("tiny-imagenet", part("train"), part("val"), tuple(classes["class_ids"]), tuple(classes["class_names"]))


def load_dataset(name: str, image_size: int = 32, **synthetic_args) -> Dataset:
    """A dataset by registry name; ``synthetic_args`` go to :func:`make_synthetic`."""
    check_choice("dataset", name, DATASETS)
    if name == "synthetic":
        return make_synthetic(image_size=image_size, **synthetic_args)
    if synthetic_args:
        raise DataError(f"options {sorted(synthetic_args)} apply only to the synthetic dataset")
    return load_tiny_imagenet(image_size)


SYNTHETIC_BYTES = 4 * 2**30  # the largest synthetic set generated in memory (uint8 pixels)


@dataclass(frozen=True)
class DataConfig:
    """Which images the models see.

    :param dataset: ``tiny-imagenet`` (real) or ``synthetic`` (generated in code).
    :param image_size: image side in pixels; Tiny-ImageNet is prepared at 64 and 32.
    :param synthetic_classes: classes of the synthetic set.
    :param synthetic_train_per_class: training images per synthetic class.
    :param synthetic_val_per_class: val images per synthetic class.
    """

    dataset: str = "tiny-imagenet"
    image_size: int = 32
    synthetic_classes: int = 20
    synthetic_train_per_class: int = 40
    synthetic_val_per_class: int = 10

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        if self.dataset == "tiny-imagenet":
            check_choice("image_size", self.image_size, PREPARED_SIZES)
        else:
            check_range("image_size", self.image_size, 8, 256)
        check_range("synthetic_classes", self.synthetic_classes, 2, 10_000)
        check_range("synthetic_train_per_class", self.synthetic_train_per_class, 2, 100_000)
        check_range("synthetic_val_per_class", self.synthetic_val_per_class, 2, 100_000)
        if self.dataset == "synthetic":
            images = self.synthetic_classes * (self.synthetic_train_per_class + self.synthetic_val_per_class)
            size = images * self.image_size**2 * 3
            if size > SYNTHETIC_BYTES:
                raise ConfigError(
                    f"the synthetic set would hold {images:,} images of {self.image_size}x{self.image_size} px, {size / 2**30:.1f} GiB "
                    f"in memory (at most {SYNTHETIC_BYTES / 2**30:.0f} GiB): fewer classes, images per class or pixels"
                )

    def load(self) -> Dataset:
        """The dataset this config names (prepared and memory-mapped for Tiny-ImageNet)."""
        if self.dataset == "synthetic":
            return load_dataset(
                "synthetic",
                self.image_size,
                num_classes=self.synthetic_classes,
                train_per_class=self.synthetic_train_per_class,
                val_per_class=self.synthetic_val_per_class,
            )
        return load_dataset(self.dataset, self.image_size)
