"""Batched augmentations on tensors: one gather per batch instead of one Python call per image.

Random crop with zero padding and horizontal flip are both re-indexings of the image grid, so
they fold into a single index computation per batch: for image b, output pixel (y, x) reads padded
pixel (oy_b + y, ox_b + x), or (oy_b + y, ox_b + W - 1 - x) when b is flipped. That runs on uint8
(a quarter of float32's memory traffic), on whatever device the batch is on.
"""

from __future__ import annotations

import torch


def crop_flip(
    images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random crop of zero-padded images back to their size, and random horizontal flip.

    `images` is [B, C, H, W] of any dtype; random draws come from the CPU `generator` (so runs
    are reproducible on every device) and only the small index tensors move to the device.
    """
    b, c, h, w = images.shape
    if padding == 0 and not flip:
        return images
    device = images.device
    if padding > 0:
        padded = images.new_zeros((b, c, h + 2 * padding, w + 2 * padding))
        padded[:, :, padding : padding + h, padding : padding + w] = images
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    else:
        padded = images
        oy = torch.zeros(b, dtype=torch.int64)
        ox = torch.zeros(b, dtype=torch.int64)
    hp, wp = padded.shape[2], padded.shape[3]
    flipped = (
        torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    )
    oy, ox, flipped = oy.to(device), ox.to(device), flipped.to(device)
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    rows = oy[:, None] + ys[None, :]  # [B, H]
    cols = torch.where(flipped[:, None], ox[:, None] + (w - 1 - xs)[None, :], ox[:, None] + xs[None, :])
    # Linear index into the flat padded tensor: image, channel, row, column.
    base = (torch.arange(b, device=device) * (c * hp * wp))[:, None, None, None]
    channel = (torch.arange(c, device=device) * (hp * wp))[None, :, None, None]
    index = base + channel + (rows * wp)[:, None, :, None] + cols[:, None, None, :]
    return padded.reshape(-1)[index]


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one size x size square per image, centred anywhere (clipped at the border), in place.

    The square's centre may lie at any pixel, so near the border less than size^2 is cut: the
    convention of the Cutout paper and of DARTS' evaluation training.
    """
    if size <= 0:
        return images
    b, _, h, w = images.shape
    device = images.device
    cy = torch.randint(0, h, (b,), generator=generator).to(device)
    cx = torch.randint(0, w, (b,), generator=generator).to(device)
    ys = torch.arange(h, device=device)[None, :]
    xs = torch.arange(w, device=device)[None, :]
    half = size // 2
    in_rows = (ys >= (cy[:, None] - half)) & (ys < (cy[:, None] + half))  # [B, H]
    in_cols = (xs >= (cx[:, None] - half)) & (xs < (cx[:, None] + half))  # [B, W]
    mask = in_rows[:, :, None] & in_cols[:, None, :]  # [B, H, W]
    return images.masked_fill_(mask[:, None, :, :], 0.0)
