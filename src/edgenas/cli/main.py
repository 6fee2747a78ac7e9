"""Entry point of the `edgenas` command.

Each command group lives in its own module with a `register(subparsers)` function that adds its
parsers and sets `handler` on them; COMMANDS maps each group to that function. Errors the user can fix (`UserError`, bad flags) print one
line and exit with status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence

from edgenas.errors import UserError
from edgenas.util.registry import lazy
from edgenas.util.threads import configure_threads

# Command group -> its `register(subparsers)`, in the order `edgenas --help` lists them.
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    name: lazy(f"edgenas.cli.{name}", "register")
    for name in ("space", "model", "search", "runs", "report", "data", "latency", "darts", "supernet", "demo", "train", "export")
}


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
    for register in COMMANDS.values():
        register(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill`): handled like Ctrl-C, so every job stops the same way
    and leaves what it wrote resumable."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        configure_threads()  # before torch is imported (build_parser imports it): see util/threads.py
    except UserError as error:
        print(f"edgenas: error: {error}", file=sys.stderr)
        return UserError.exit_code
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        print(f"edgenas: error: {error}", file=sys.stderr)
        return UserError.exit_code
    except Terminated:
        print("edgenas: stopped by SIGTERM; rerun the same command to resume", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("edgenas: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
