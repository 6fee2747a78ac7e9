"""Shared printing helpers for CLI commands: JSON to stdout, tables through rich."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def arch_cell(arch: str) -> str:
    """An architecture string as a table cell: one block per line.

    Why: a whole MnasNet string is 100-200 characters; left to rich it wraps at arbitrary points
    and border characters land inside it. Block by block it stays readable, and every line is a
    whole block in the string's own notation (`runs show --json` gives the string in one piece).
    """
    return "\n".join(arch.split())


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table; rows are ruled apart when a cell spans lines (an `arch_cell`), so they read as rows."""
    cells = [[str(cell) for cell in row] for row in rows]
    table = Table(title=title, show_lines=any("\n" in cell for row in cells for cell in row))
    for column in columns:
        table.add_column(column)
    for row in cells:
        table.add_row(*row)
    Console(width=max(120, Console().width)).print(table)
