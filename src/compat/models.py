"""Backbones for small images with an embedding head and a bias-free classifier head.

Built from torchvision's ResNet blocks with a 3x3 stride-1 stem and no max-pool (the usual
adaptation to 32x32 and 64x64 images). The embedding is what retrieval compares (128-d, as
in the FCT code); the classifier sits on top of it, as in FCT's and BCT's models, so that an
old model's classifier can score a new model's embedding (the BCT influence loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock

from .errors import ConfigError, check_choice, check_range
from .store import ADDED_OPTION

BACKBONES: dict[str, Callable[[int], nn.Module]] = {}
MIN_IMAGE_SIZES: dict[str, int] = {}  # backbone -> the smallest image side it accepts


def register_backbone(name: str, min_image_size: int = 1):
    """Decorator: a backbone factory ``f(width) -> module with .out_dim`` under ``name``, which accepts images of
    ``min_image_size`` pixels and more (smaller ones leave no pixel after its poolings)."""

    def wrap(factory):
        BACKBONES[name] = factory
        MIN_IMAGE_SIZES[name] = min_image_size
        return factory

    return wrap


def check_image_size(config: ModelConfig, image_size: int) -> None:
    """The backbone accepts images of ``image_size`` pixels: otherwise one ConfigError naming the smallest it takes."""
    smallest = MIN_IMAGE_SIZES[config.backbone]
    if image_size < smallest:
        raise ConfigError(
            f"data.image_size={image_size} is too small for backbone {config.backbone!r}: it takes images of "
            f"at least {smallest} pixels (its poolings would leave none); use a larger size or another backbone"
        )


class StridedPointwise(nn.Conv2d):
    """A bias-free 1x1 convolution with a stride, computed as subsampling then a stride-1 1x1 convolution (the same
    map, the same parameters). torch 2.14's CPU kernel for a strided 1x1 convolution on channels_last input with
    few channels (2 or 4) writes out of bounds on AVX2 processors (heap corruption, then a crash); this form avoids
    that kernel. ``tests/test_models_train.py`` checks it equals the strided convolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.conv2d(x[:, :, :: s[0], :: s[1]], self.weight)


class SmallResNet(nn.Module):
    """ResNet of BasicBlocks for small images: 3x3 stride-1 stem, no max-pool, global average pool.

    :param stage_blocks: blocks per stage; each stage after the first halves the resolution.
    :param stage_widths: channels per stage.
    """

    def __init__(self, stage_blocks: list[int], stage_widths: list[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stage_widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(stage_widths[0]), nn.ReLU(inplace=True))
        layers, in_ch = [], stage_widths[0]
        for i, (blocks, width) in enumerate(zip(stage_blocks, stage_widths)):
            stride = 1 if i == 0 else 2
            for b in range(blocks):
                down = None
                if b == 0 and (stride != 1 or in_ch != width):
                    down = nn.Sequential(StridedPointwise(in_ch, width, stride), nn.BatchNorm2d(width))
                layers.append(BasicBlock(in_ch, width, stride=stride if b == 0 else 1, downsample=down))
                in_ch = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: each block starts as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))  # B x C x h x w
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # B x C


@register_backbone("resnet18")
def resnet18(width: int = 64) -> SmallResNet:
    """ResNet-18 layout (2-2-2-2 blocks), stage widths w, 2w, 4w, 8w (w = 64 is full width)."""
    return SmallResNet([2, 2, 2, 2], [width, 2 * width, 4 * width, 8 * width])


@register_backbone("resnet20")
def resnet20(width: int = 16) -> SmallResNet:
    """CIFAR ResNet-20 layout (3-3-3 blocks), stage widths w, 2w, 4w (w = 16 in He et al.)."""
    return SmallResNet([3, 3, 3], [width, 2 * width, 4 * width])


@register_backbone("resnet10")
def resnet10(width: int = 32) -> SmallResNet:
    """A shallow ResNet (1-1-1-1 blocks), stage widths w, 2w, 4w, 8w: wide and fast on a CPU."""
    return SmallResNet([1, 1, 1, 1], [width, 2 * width, 4 * width, 8 * width])


class PatchWhitening(nn.Module):
    """A frozen 2x2 convolution that whitens image patches, the first layer of airbench
    (Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv 2404.00498, Sec. 3.2).

    Its 2 x 12 filters are the eigenvectors of the training patches' covariance, scaled by
    1/sqrt(eigenvalue + eps), with both signs; set from data by :meth:`fit` before training.

    :param bias: a trained bias after the frozen filters, then GELU (airbench's whitening layer has both).
    """

    def __init__(self, eps: float = 5e-4, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 2, bias=bias)
        self.conv.weight.requires_grad_(False)
        if bias:
            nn.init.zeros_(self.conv.bias)
        self.act = nn.GELU() if bias else nn.Identity()
        self.eps = eps
        self.out_channels = 24

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Set the filters from a normalized float batch ``x`` (B x 3 x H x W)."""
        patches = x.float().unfold(2, 2, 1).unfold(3, 2, 1)  # B x 3 x H-1 x W-1 x 2 x 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)  # P x 12
        eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(patches.T))  # 12, 12 x 12 (columns)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + self.eps)[:, None]).reshape(12, 3, 2, 2)
        self.conv.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class AirNet(nn.Module):
    """airbench's network for small images (Jordan, arXiv 2404.00498): patch whitening, then three
    blocks of conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU, global max pool.
    Few, wide layers keep a CPU's matrix units busy.

    :param widths: channels of the three blocks (airbench: 64, 256, 256).
    :param whiten_bias: a trained bias and GELU after the whitening filters (:class:`PatchWhitening`).
    """

    def __init__(self, widths: list[int], whiten_bias: bool = False) -> None:
        super().__init__()
        self.whiten = PatchWhitening(bias=whiten_bias)
        layers, in_ch = [], self.whiten.out_channels
        for width in widths:
            layers += [
                nn.Conv2d(in_ch, width, 3, padding="same", bias=False),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(width),
                nn.GELU(),
                nn.Conv2d(width, width, 3, padding="same", bias=False),
                nn.BatchNorm2d(width),
                nn.GELU(),
            ]
            in_ch = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_ch
        for m in self.layers.modules():
            if isinstance(m, nn.Conv2d):  # identity (dirac) init of the first in_channels filters, as airbench
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                with torch.no_grad():
                    n = min(m.in_channels, m.out_channels)
                    nn.init.dirac_(m.weight[:n])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.whiten(x))  # B x C x h x w
        return torch.flatten(F.adaptive_max_pool2d(x, 1), 1)  # B x C


@register_backbone("airnet", min_image_size=9)  # 2x2 whitening, then three 2x2 max-pools
def airnet(width: int = 16, whiten_bias: bool = False) -> AirNet:
    """airbench's three-block network, widths w, 4w, 4w (w = 64 in airbench)."""
    return AirNet([width, 4 * width, 4 * width], whiten_bias)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one embedding model.

    :param backbone: a name in :data:`BACKBONES`.
    :param width: base channel width of the backbone.
    :param embedding_dim: size of the retrieval embedding (128 in the FCT code).
    :param normalize_embedding: output L2-normalized embeddings (then raw L2 ranks as cosine).
    :param whiten_bias: ``airnet`` only: a trained bias and GELU after its frozen patch whitening (airbench).
    """

    backbone: str = "resnet20"
    width: int = 16
    embedding_dim: int = 128
    normalize_embedding: bool = False
    whiten_bias: bool = field(default=False, metadata=ADDED_OPTION)

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, BACKBONES)
        if self.whiten_bias and self.backbone != "airnet":
            raise ConfigError(f"whiten_bias=True needs backbone 'airnet' (the one with patch whitening), got {self.backbone!r}")
        check_range("width", self.width, 1, 1024)
        check_range("embedding_dim", self.embedding_dim, 2, 4096)


class EmbeddingModel(nn.Module):
    """Backbone -> linear embedding -> bias-free linear classifier.

    ``forward`` returns (embedding B x D, logits B x C). The classifier is applied to the
    embedding itself, so another model's classifier can score it.
    """

    def __init__(self, config: ModelConfig, num_classes: int) -> None:
        super().__init__()
        check_range("num_classes", num_classes, 1)
        self.config = config
        options = {"whiten_bias": True} if config.whiten_bias else {}
        self.backbone = BACKBONES[config.backbone](config.width, **options)
        self.embedding = nn.Linear(self.backbone.out_dim, config.embedding_dim)
        self.classifier = nn.Linear(config.embedding_dim, num_classes, bias=False)

    @torch.no_grad()
    def fit_data_layers(self, x: torch.Tensor) -> None:
        """Set the layers initialized from data (patch whitening) from a normalized batch ``x``."""
        for m in self.modules():
            if isinstance(m, PatchWhitening):
                m.fit(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embedding(self.backbone(x))  # B x D
        return F.normalize(z, dim=1) if self.config.normalize_embedding else z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x)
        return z, self.classifier(z)
