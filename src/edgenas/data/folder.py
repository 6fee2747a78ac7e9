"""An image-folder tree (ImageNet style): one subfolder per class, images inside.

`folder:DIR` reads `DIR/train/<class>/*` for split 'train' and `DIR/val/<class>/*` (or `test/`)
for 'test'; a DIR whose subfolders are the classes themselves serves as the training split.
Class names are the sorted subfolder names (label = index). Images of different sizes need
`image_size`: each is resized (shorter side) and centre-cropped to it, as ImageNet evaluation does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgenas.data.dataset import ImageDataset
from edgenas.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_SPLIT_FOLDERS = {"train": ("train",), "test": ("val", "test", "valid", "validation")}


def _split_root(root: Path, split: str) -> Path:
    for name in _SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    if split == "train":
        return root
    raise UserError(f"{root} has no val/ or test/ folder for the test split; add one or use split='train'")


def _resize_crop(image, size: int):
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_folder(root: str | Path, split: str, image_size: int | None = None, grayscale: bool = False) -> ImageDataset:
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} not found; pass a folder with one subfolder per class")
    base = _split_root(root, split)
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [c for c in classes if c not in ("train", "val", "test", "valid", "validation")]
    if len(classes) < 2:
        raise UserError(f"{base} has {len(classes)} class subfolders; an image folder needs at least 2")
    mode = "L" if grayscale else "RGB"
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for label, name in enumerate(classes):
        files = sorted(p for p in (base / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"class folder {base / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for path in files:
            try:
                with Image.open(path) as image:
                    image = image.convert(mode)
                    if image_size:
                        image = _resize_crop(image, image_size)
                    pixels = np.asarray(image)
            except (UnidentifiedImageError, OSError) as error:
                raise UserError(f"{path} is not a readable image ({error}); remove or replace it") from None
            if first is None:
                first = (path, pixels.shape[:2])
            elif pixels.shape[:2] != first[1]:
                raise UserError(
                    f"{path} is {pixels.shape[1]}x{pixels.shape[0]} but {first[0].name} is "
                    f"{first[1][1]}x{first[1][0]}; pass an image size (e.g. image_size=64) to resize all"
                )
            arrays.append(pixels if pixels.ndim == 3 else pixels[:, :, None])
            labels.append(label)
    images = np.stack(arrays).transpose(0, 3, 1, 2).copy()
    return ImageDataset(torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64),
                        classes, f"folder:{root.name}-{split}")
