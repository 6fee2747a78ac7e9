"""CIFAR-10 as the JPEG zip shards in ../shared/data/cifar10 (members `<split>/<class>/NNNN.jpg`).

Every shard is class balanced (250 images per class), so the first K shards are a fair subset:
`cifar10-jpeg:2` is 5,000 training images. Decoding is cheap (about 0.25 s per 2,500-image shard
on one core, ~5 s for all 50,000), so there is no on-disk cache to go stale.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from edgenas.data.dataset import ImageDataset
from edgenas.errors import UserError

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
_SHARD = re.compile(r"^cifar10_(train|test)_(\d+)\.zip$")


def default_cifar10_dir() -> Path:
    """$EDGENAS_DATA_DIR/cifar10, else ../shared/data/cifar10 beside the working or source tree."""
    configured = os.environ.get("EDGENAS_DATA_DIR")
    if configured:
        return Path(configured) / "cifar10"
    candidates = [Path.cwd().parent / "shared" / "data" / "cifar10",
                  Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar10"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def shard_paths(data_dir: Path, split: str) -> list[Path]:
    if not data_dir.is_dir():
        raise UserError(
            f"CIFAR-10 JPEG folder {data_dir} not found; set EDGENAS_DATA_DIR or pass data_dir"
        )
    shards = sorted(
        (int(m.group(2)), p) for p in data_dir.iterdir()
        if (m := _SHARD.match(p.name)) and m.group(1) == split
    )
    if not shards:
        raise UserError(f"no cifar10_{split}_NN.zip shards in {data_dir}; check the folder")
    return [p for _, p in shards]


def _read_shard(path: Path, split: str) -> tuple[list[np.ndarray], list[int]]:
    from PIL import Image, UnidentifiedImageError

    images: list[np.ndarray] = []
    labels: list[int] = []
    try:
        with zipfile.ZipFile(path) as archive:
            for member in sorted(archive.namelist()):
                if not member.endswith(".jpg"):
                    continue
                parts = member.split("/")
                if len(parts) != 3 or parts[0] != split or parts[1] not in CIFAR10_CLASSES:
                    raise UserError(f"{path}: unexpected member '{member}' (want {split}/<class>/N.jpg)")
                try:
                    with Image.open(io.BytesIO(archive.read(member))) as image:
                        pixels = np.asarray(image.convert("RGB"))
                except (UnidentifiedImageError, OSError) as error:
                    raise UserError(f"{path}: member '{member}' is not a readable JPEG ({error}); "
                                    "re-download the shard") from None
                if pixels.shape != (32, 32, 3):
                    raise UserError(f"{path}: member '{member}' is {pixels.shape}, not 32x32 RGB")
                images.append(pixels)
                labels.append(CIFAR10_CLASSES.index(parts[1]))
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{path} is not a readable zip file ({error}); re-download the shard") from None
    if not images:
        raise UserError(f"{path} holds no {split}/<class>/*.jpg images; check the shard")
    return images, labels


def load_cifar10_jpeg(split: str, data_dir: str | Path | None = None, shards: int | None = None) -> ImageDataset:
    """The first `shards` shards (all when None) of `split` ('train' or 'test')."""
    folder = Path(data_dir) if data_dir else default_cifar10_dir()
    paths = shard_paths(folder, split)
    if shards is not None:
        if not 1 <= shards <= len(paths):
            raise UserError(f"asked for {shards} {split} shards, {folder} has {len(paths)}; "
                            f"use 1..{len(paths)}")
        paths = paths[:shards]
    images: list[np.ndarray] = []
    labels: list[int] = []
    for path in paths:
        shard_images, shard_labels = _read_shard(path, split)
        images += shard_images
        labels += shard_labels
    array = np.stack(images).transpose(0, 3, 1, 2).copy()
    suffix = f":{shards}" if shards else ""
    return ImageDataset(torch.from_numpy(array), torch.tensor(labels, dtype=torch.int64),
                        list(CIFAR10_CLASSES), f"cifar10-jpeg{suffix}-{split}")
