"""Datasets held in memory as uint8 tensors, and the batched loader that augments them on tensors.

`load_dataset(spec)` reads any supported source into an `ImageDataset`; `BatchLoader` turns one
into normalised, augmented float batches on the training device.
"""

from edgenas.data.dataset import ImageDataset
from edgenas.data.loader import Augment, BatchLoader
from edgenas.data.sources import DATASET_HELP, load_dataset

__all__ = ["DATASET_HELP", "Augment", "BatchLoader", "ImageDataset", "load_dataset"]
