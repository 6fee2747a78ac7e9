"""One writer per run directory: an OS-level lock held for the life of the writing process.

Why the kernel's lock (`flock`) and not a lock file that says "busy": a process killed with
`kill -9` cannot remove a file, and a stale "busy" file would then refuse every resume. A `flock`
belongs to the open file; the kernel drops it when the process dies, however it dies. The file
itself (`.edgenas.lock`) stays and only records who holds it, so a second writer can say which
process owns the run. Readers (`runs show`, `report`) never take it: they read the SQLite store
in WAL mode while the writer writes.

Windows has no `fcntl`; there the lock is a no-op (one writer is then the user's promise).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edgenas.errors import UserError

LOCK_NAME = ".edgenas.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class WriterLock:
    """Held from `acquire()` until `release()` or the process's end; `what` names the job in errors."""

    def __init__(self, path: str | os.PathLike[str], what: str = "run") -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    @classmethod
    def for_directory(cls, directory: str | os.PathLike[str], what: str = "run") -> WriterLock:
        return cls(Path(directory) / LOCK_NAME, what)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> WriterLock:
        """Take the lock, or raise a UserError naming the process that holds it and what to do."""
        if self._fd is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UserError(f"cannot lock {self.path.parent} ({error.strerror or error}); "
                            "choose a writable directory") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UserError(
                    f"{self.path.parent} is being written by another process ({holder}); wait for it to end "
                    f"or stop it, then rerun the same command to resume this {self.what}"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "a process that has not said which"
