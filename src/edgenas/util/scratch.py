"""Temporary directories that a killed process does not leave behind for good.

Why: a latency measurer writes every model it times (ONNX or LiteRT files, tens of MB for a
search) into a temporary directory. `tempfile.TemporaryDirectory` removes it when its process
ends normally, but not after `kill -9`, which every long job here is meant to survive: each kill
left its files in the temporary folder until the next reboot. So each directory holds the
kernel's lock (`WriterLock`, dropped however its process dies) for as long as it is in use, and
making a new one removes the directories of the same prefix whose lock nobody holds.

A directory younger than `ORPHAN_AGE_S` is never removed (its maker may not have locked it yet).
Where the kernel has no `flock` (Windows), nothing is swept: a lock nobody can hold says nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from pathlib import Path

from edgenas.errors import UserError
from edgenas.util.lock import LOCK_NAME, WriterLock, fcntl

ORPHAN_AGE_S = 60.0


class ScratchDirectory:
    """A temporary directory, locked while this object lives; `cleanup()` (or the process's normal
    end) removes it, and a later `ScratchDirectory` of the same prefix removes it after a kill."""

    def __init__(self, prefix: str, root: str | Path | None = None) -> None:
        root = Path(root or tempfile.gettempdir())
        remove_orphans(prefix, root)
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        lock = WriterLock.for_directory(self.path, "scratch directory").acquire()
        self._finalizer = weakref.finalize(self, _remove, self.path, lock)

    def cleanup(self) -> None:
        self._finalizer()


def remove_orphans(prefix: str, root: str | Path) -> list[Path]:
    """Remove the directories `root/prefix*` that hold a lock file nobody holds (their process
    died), older than `ORPHAN_AGE_S`; the removed paths. Directories without a lock file (made by
    something else, or by an older edgenas) are left alone."""
    if fcntl is None:
        return []
    removed = []
    now = time.time()
    for path in Path(root).glob(f"{prefix}*"):
        try:
            if not (path / LOCK_NAME).is_file() or now - path.stat().st_mtime < ORPHAN_AGE_S:
                continue
        except OSError:  # removed meanwhile by another sweeper
            continue
        lock = WriterLock.for_directory(path, "scratch directory")
        try:
            lock.acquire()
        except UserError:  # its process is alive
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            lock.release()
        removed.append(path)
    return removed


def _remove(path: Path, lock: WriterLock) -> None:
    shutil.rmtree(path, ignore_errors=True)
    lock.release()
