"""An image dataset held in memory as one uint8 tensor.

Proxy training reads the same few thousand images hundreds of times. Keeping them decoded, as
uint8 (a quarter of float32's memory), in one contiguous tensor lets a loader slice a whole batch
at once and normalise/augment it with a handful of tensor ops instead of per-sample Python calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgenas.errors import UserError


@dataclass
class ImageDataset:
    """uint8 images [N, C, H, W], int64 labels [N], class names (label = index) and a name."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    _stats: tuple[tuple[float, ...], tuple[float, ...]] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be int64 [N] matching the images")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    def take(self, indices: torch.Tensor, name: str | None = None) -> ImageDataset:
        """The images at `indices`, as a new dataset (a copy, so the parent can be freed)."""
        return ImageDataset(
            self.images[indices].contiguous(), self.labels[indices].contiguous(), list(self.classes),
            name or self.name,
        )

    def _per_class_order(self, seed: int) -> list[torch.Tensor]:
        """For each class, its sample indices in a seeded random order."""
        generator = torch.Generator().manual_seed(seed)
        order = []
        for label in range(self.num_classes):
            members = torch.nonzero(self.labels == label, as_tuple=False).flatten()
            order.append(members[torch.randperm(len(members), generator=generator)])
        return order

    def split(self, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
        """Two disjoint parts, class-stratified; the first holds `fraction` of every class.

        Stratified so that a small validation part still sees every class in its true proportion:
        a plain random cut of 500 images can miss a class's share by 20 %, which is noise the
        search would read as accuracy differences between architectures.
        """
        if not 0.0 < fraction < 1.0:
            raise UserError(f"split fraction must lie strictly between 0 and 1, got {fraction}")
        first, second = [], []
        for members in self._per_class_order(seed):
            cut = int(round(fraction * len(members)))
            first.append(members[:cut])
            second.append(members[cut:])
        a, b = torch.cat(first), torch.cat(second)
        if len(a) == 0 or len(b) == 0:
            raise UserError(
                f"dataset '{self.name}' has {len(self)} images, too few to split {fraction:g} / "
                f"{1 - fraction:g}; use more images or a fraction nearer 0.5"
            )
        a, b = a.sort().values, b.sort().values
        return self.take(a, f"{self.name}[split {fraction:g} a]"), self.take(b, f"{self.name}[split {fraction:g} b]")

    def subset(self, n: int, seed: int) -> ImageDataset:
        """`n` images, class-balanced as far as the classes allow, chosen by `seed`."""
        if n < 1:
            raise UserError(f"subset size must be at least 1, got {n}")
        if n > len(self):
            raise UserError(
                f"dataset '{self.name}' has {len(self)} images, fewer than the {n} asked for; "
                f"ask for at most {len(self)} or load more data"
            )
        if n == len(self):
            return self
        order = self._per_class_order(seed)
        # Round-robin over classes so every class gets floor/ceil(n / classes) images.
        counts = torch.tensor([len(m) for m in order])
        quota = torch.zeros_like(counts)
        remaining = n
        while remaining > 0:
            open_classes = torch.nonzero(quota < counts, as_tuple=False).flatten()
            share = max(1, remaining // len(open_classes))
            for label in open_classes.tolist():
                grant = min(share, int(counts[label] - quota[label]), remaining)
                quota[label] += grant
                remaining -= grant
                if remaining == 0:
                    break
        chosen = torch.cat([members[: int(q)] for members, q in zip(order, quota)]).sort().values
        return self.take(chosen, f"{self.name}[{n}]")

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std in [0, 1] units (cached), computed in chunks to bound memory."""
        if self._stats is None:
            c = self.images.shape[1]
            total = torch.zeros(c, dtype=torch.float64)
            total_sq = torch.zeros(c, dtype=torch.float64)
            for start in range(0, len(self), 4096):
                chunk = self.images[start : start + 4096].to(torch.float64) / 255.0
                total += chunk.sum((0, 2, 3))
                total_sq += chunk.pow(2).sum((0, 2, 3))
            count = max(1, len(self) * self.images.shape[2] * self.images.shape[3])
            mean = total / count
            std = (total_sq / count - mean.pow(2)).clamp_min(1e-12).sqrt()
            self._stats = (tuple(mean.tolist()), tuple(std.tolist()))
        return self._stats

    def describe(self) -> dict:
        c, h, w = self.shape
        return {"name": self.name, "images": len(self), "classes": self.num_classes,
                "channels": c, "height": h, "width": w}
