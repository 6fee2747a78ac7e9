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
