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


def test_reflect_fill_matches_numpy_reflection_and_given_flips_are_obeyed():
    import numpy as np

    batch = torch.randint(0, 256, (6, 3, 7, 7), dtype=torch.uint8)
    flips = torch.tensor([True, False, True, True, False, False])
    gen = torch.Generator().manual_seed(3)
    ours = random_crop_flip(batch, 2, gen, fill="reflect", flips=flips)
    gen = torch.Generator().manual_seed(3)
    oy, ox = torch.randint(0, 5, (6,), generator=gen), torch.randint(0, 5, (6,), generator=gen)
    padded = np.pad(batch.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    for i in range(6):
        crop = torch.from_numpy(padded[i, :, oy[i] : oy[i] + 7, ox[i] : ox[i] + 7].copy())
        assert torch.equal(ours[i], crop.flip(2) if flips[i] else crop)


def test_alternating_flips_flip_every_image_the_other_way_each_epoch():
    from compat.augment import alternating_flips

    first = torch.rand(100, generator=torch.Generator().manual_seed(0)) < 0.5
    assert torch.equal(alternating_flips(first, 0), first) and torch.equal(alternating_flips(first, 2), first)
    assert torch.equal(alternating_flips(first, 1), ~first) and torch.equal(alternating_flips(first, 3), ~first)
