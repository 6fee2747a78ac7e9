"""Batches from an in-memory dataset, normalised and augmented on tensors, on the training device.

A per-sample `DataLoader` pays a Python call (and, with workers, a pickling round trip) for every
image; for 32 px images and small proxy networks that overhead is as large as the training step
itself. Here a batch is one index-select of the uint8 tensor, one gather for crop+flip, one fused
normalise and one masked fill for cutout, all on `device` (the GPU when there is one), so the data
side costs a few percent of a step.

Usage (also what DARTS' evaluation training uses)::

    loader = BatchLoader(train_set, 96, augment=Augment(crop_padding=4, flip=True, cutout=16),
                         device="cuda", seed=0)
    for images, labels in loader:   # float32 [B, C, H, W] normalised, int64 [B]
        ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from edgenas.data.augment import crop_flip, cutout
from edgenas.data.dataset import ImageDataset
from edgenas.errors import UserError


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation. The default (all off) is what validation uses."""

    crop_padding: int = 0  # random crop of the image zero-padded by this many pixels per side
    flip: bool = False  # random horizontal flip with probability 1/2
    cutout: int = 0  # side of one zeroed square per image, after normalisation (DARTS uses 16)

    def __post_init__(self) -> None:
        if self.crop_padding < 0 or self.cutout < 0:
            raise UserError("crop padding and cutout size must be zero or positive")

    @classmethod
    def standard(cls, resolution: int, flip: bool = True) -> Augment:
        """The usual CIFAR recipe scaled to the image size: pad by 1/8 of the side, flip."""
        return cls(crop_padding=max(1, resolution // 8), flip=flip)

    @classmethod
    def for_dataset(cls, dataset: ImageDataset) -> Augment:
        """`standard` for the dataset's size; no flip for digits (a mirrored 2 is not a 2)."""
        return cls.standard(dataset.shape[1], flip=not dataset.name.startswith("digits"))


class BatchLoader:
    """Iterates (images float32 [B, C, H, W] normalised, labels int64 [B]) on `device`.

    Every pass reshuffles (when `shuffle`) and redraws augmentations from one CPU generator seeded
    with `seed`, so the sequence of batches over successive epochs is the same on every run and on
    every device. `mean`/`std` default to the dataset's own channel statistics; pass the training
    set's to a validation loader so both see the same normalisation.

    `channels_last=True` yields NHWC-strided batches, and `train`/`evaluate` then convert the
    model to match: on CPU that made MnasNet-space candidates train 1.5-2.7x faster here
    (depthwise convolutions' backward pass), see docs/bench/data.md.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: Augment | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        if len(dataset) == 0:
            raise UserError(f"dataset '{dataset.name}' is empty; load some images first")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment or Augment()
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.generator = torch.Generator().manual_seed(seed)
        if mean is None or std is None:
            stats_mean, stats_std = dataset.channel_stats()
            mean = stats_mean if mean is None else mean
            std = stats_std if std is None else std
        channels = dataset.shape[0]
        if len(mean) != channels or len(std) != channels:
            raise UserError(f"mean/std need {channels} values (one per channel), got {len(mean)}/{len(std)}")
        # x_norm = (u8 / 255 - mean) / std  ==  u8 * scale + shift, one fused multiply-add.
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(self.device)
        self._shift = (-mean_t / std_t).view(1, -1, 1, 1).to(self.device)
        # The images move to the device once; every epoch then only indexes them there.
        self._images = dataset.images.to(self.device)
        self._labels = dataset.labels.to(self.device)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.make_batch(index)

    def make_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised, augmented batch of the images at `index` (a device tensor)."""
        raw = self._images.index_select(0, index)
        aug = self.augment
        raw = crop_flip(raw, aug.crop_padding, aug.flip, self.generator)
        images = torch.addcmul(self._shift, raw.to(torch.float32), self._scale)
        if aug.cutout:
            images = cutout(images, aug.cutout, self.generator)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, self._labels.index_select(0, index)
