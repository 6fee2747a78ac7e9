"""Entry point of the `edgenas` command.

Each command group lives in its own module with a `register(subparsers)` function that adds its
parsers and sets `handler` on them. Errors the user can fix (`UserError`, bad flags) print one
line and exit with status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgenas.errors import UserError

# Command-group modules, in the order `edgenas --help` lists them.
COMMAND_GROUPS = [
    "edgenas.cli.space",
    "edgenas.cli.model",
    "edgenas.cli.search",
    "edgenas.cli.runs",
    "edgenas.cli.report",
    "edgenas.cli.data",
    "edgenas.cli.latency",
    "edgenas.cli.darts",
    "edgenas.cli.demo",
    "edgenas.cli.train",
    "edgenas.cli.export",
]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2 (argparse prints the usage too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="edgenas",
        description="Neural architecture search for networks that are accurate and fast on their device.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for module_name in COMMAND_GROUPS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        print(f"edgenas: error: {error}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("edgenas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
