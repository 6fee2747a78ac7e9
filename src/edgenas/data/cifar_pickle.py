"""CIFAR-10/100 in the python-pickle batches users download from the dataset's page.

`DIR` may be the extracted folder (`cifar-10-batches-py/`, `cifar-100-python/`), the folder
holding it, or the folder holding the downloaded `cifar-10-python.tar.gz` /
`cifar-100-python.tar.gz` (read directly, nothing extracted). The pickles are read with an
unpickler that only admits numpy arrays and builtin containers, so a tampered file cannot run
code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgenas.data.dataset import ImageDataset
from edgenas.errors import UserError


@dataclass(frozen=True)
class CifarLayout:
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes


LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py", "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
        "batches.meta", b"labels", b"label_names",
    ),
    "cifar100": CifarLayout(
        "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",),
        "meta", b"fine_labels", b"fine_label_names",
    ),
}

_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "bytes"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        content = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # any decoding failure means a corrupt or foreign file
        raise UserError(f"{where} is not a CIFAR pickle batch ({type(error).__name__}: {error}); "
                        "re-download the dataset") from None
    if not isinstance(content, dict):
        raise UserError(f"{where} is not a CIFAR pickle batch (no dict inside); re-download the dataset")
    return content


class _Source:
    """Reads named batch files from a folder or from inside the downloaded tar.gz."""

    def __init__(self, root: Path, layout: CifarLayout) -> None:
        self.folder: Path | None = None
        self.archive: Path | None = None
        for candidate in (root, root / layout.folder):
            if (candidate / layout.meta_file).is_file():
                self.folder = candidate
                return
        if (root / layout.archive).is_file():
            self.archive = root / layout.archive
            return
        raise UserError(
            f"no {layout.folder}/ (with {layout.meta_file}) or {layout.archive} in {root}; "
            "point DIR at the downloaded dataset"
        )

    def read(self, name: str, layout: CifarLayout) -> dict:
        if self.folder is not None:
            path = self.folder / name
            if not path.is_file():
                raise UserError(f"missing CIFAR batch file {path}; re-download the dataset")
            return _unpickle(path.read_bytes(), str(path))
        assert self.archive is not None
        member = f"{layout.folder}/{name}"
        try:
            with tarfile.open(self.archive, "r:gz") as tar:
                handle = tar.extractfile(member)
                data = handle.read() if handle else None
        except KeyError:
            raise UserError(f"{self.archive} has no member {member}; re-download the dataset") from None
        except (tarfile.TarError, OSError, EOFError) as error:
            raise UserError(f"{self.archive} is not a readable tar.gz ({error}); re-download it") from None
        if data is None:
            raise UserError(f"{self.archive}: {member} is not a file; re-download the dataset")
        return _unpickle(data, f"{self.archive}:{member}")


def load_cifar_pickle(kind: str, root: str | Path, split: str) -> ImageDataset:
    """CIFAR-10 (`kind='cifar10'`) or CIFAR-100 (fine labels) from their pickle batches."""
    layout = LAYOUTS[kind]
    root = Path(root)
    if not root.exists():
        raise UserError(f"dataset folder {root} not found; pass the folder holding {layout.folder}/")
    source = _Source(root, layout)
    meta = source.read(layout.meta_file, layout)
    if layout.names_key not in meta:
        raise UserError(f"{layout.meta_file} in {root} has no {layout.names_key.decode()}; re-download")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[layout.names_key]]
    images, labels = [], []
    for name in layout.train_files if split == "train" else layout.test_files:
        batch = source.read(name, layout)
        data, batch_labels = batch.get(b"data"), batch.get(layout.label_key)
        if not isinstance(data, np.ndarray) or batch_labels is None or data.ndim != 2 \
                or data.shape[1] != 3072 or len(batch_labels) != data.shape[0]:
            raise UserError(f"CIFAR batch '{name}' in {root} has no 3072-byte rows with labels; re-download")
        images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    label_array = np.concatenate(labels)
    if label_array.min() < 0 or label_array.max() >= len(classes):
        raise UserError(f"CIFAR labels in {root} exceed the {len(classes)} class names; re-download")
    return ImageDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(label_array),
                        classes, f"{kind}-{split}")
