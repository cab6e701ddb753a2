"""Batch augmentation against a per-image reference loop."""

import torch

from compat.augment import random_crop_flip, to_input


def reference(batch, padding, generator):
    b, _, h, w = batch.shape
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    out = []
    for i in range(b):
        canvas = torch.zeros(3, h + 2 * padding, w + 2 * padding, dtype=batch.dtype)
        canvas[:, padding : padding + h, padding : padding + w] = batch[i]
        crop = canvas[:, oy[i] : oy[i] + h, ox[i] : ox[i] + w]
        out.append(crop.flip(2) if flip[i] else crop)
    return torch.stack(out)


def test_crop_flip_matches_per_image_loop():
    batch = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    ours = random_crop_flip(batch, 2, torch.Generator().manual_seed(5))
    theirs = reference(batch, 2, torch.Generator().manual_seed(5))
    assert torch.equal(ours, theirs)


def test_no_padding_only_flips_and_input_is_channels_last():
    batch = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    out = random_crop_flip(batch, 0, torch.Generator().manual_seed(0))
    for o, b in zip(out, batch):
        assert torch.equal(o, b) or torch.equal(o, b.flip(2))
    x = to_input(out)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
