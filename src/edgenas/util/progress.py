"""One look for every progress bar: what it is, the bar, done/total, elapsed time and an ETA.

Searches, LUT builds and training runs take minutes to hours on a CPU; the one question a user
watching them asks is "when will it end", so every bar ends with the time remaining.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(*extra: ProgressColumn, console: Console | None = None, disable: bool = False,
                 transient: bool = False) -> Progress:
    """A rich Progress: description, bar, M/N, the `extra` columns, elapsed, ETA (on stderr by default)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra,
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console or Console(stderr=True), disable=disable, transient=transient,
    )


class TaskBar:
    """One task's transient bar for a loop: `advance()` per step, `close()` in a `finally`.

    Closed explicitly rather than used as a context manager so that a loop which raises (a NaN
    loss, a stop) never leaves a live bar drawing over the error message.
    """

    def __init__(self, description: str, total: int) -> None:
        self._progress = progress_bar(transient=True)
        self._task = self._progress.add_task(description, total=total)
        self._progress.start()

    def advance(self) -> None:
        self._progress.advance(self._task)

    def close(self) -> None:
        self._progress.stop()
