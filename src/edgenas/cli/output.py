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
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(width=max(120, Console().width)).print(table)
