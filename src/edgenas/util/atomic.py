"""Files written whole or not at all: write under a temporary name beside the target, then rename.

Why one helper: a `kill -9` (or a full disk) in the middle of a write must leave either the old
file or the new one, never half of one, because every long job resumes from what it wrote. A
rename within one directory is atomic on POSIX and Windows (`os.replace`), so every writer of a
checkpoint, a model file, a report or an exported network goes through `atomic_path`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends without
    an exception, deleted when it raises. The temporary keeps the suffix (exporters look at it)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)  # nothing left after a rename; the debris of a failure


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` (text as UTF-8) to `path` whole, flushed to disk before the rename."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as partial:
        with partial.open("wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def torch_save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """`torch.save(obj, path)`, written whole or not at all."""
    import torch

    with atomic_path(path) as partial:
        torch.save(obj, partial)
    return Path(path)
