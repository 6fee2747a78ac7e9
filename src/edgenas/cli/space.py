"""`edgenas space show|sample`: inspect a search space and draw architectures from it."""

from __future__ import annotations

import argparse
import random

from edgenas.cli.output import print_json, print_table
from edgenas.errors import UserError
from edgenas.spaces import get_space, space_names


def add_space_options(parser: argparse.ArgumentParser) -> None:
    """Options that configure a space (shared by every command that builds one)."""
    parser.add_argument("--resolution", type=int, default=None, help="input size (mnas: 224 default)")
    parser.add_argument("--classes", type=int, default=None, help="number of classes")


def space_from_args(name: str, args: argparse.Namespace):
    config = {}
    if getattr(args, "resolution", None) is not None:
        config["resolution"] = args.resolution
    if getattr(args, "classes", None) is not None:
        if args.classes < 1:
            raise UserError(f"--classes must be at least 1, got {args.classes}")
        config["num_classes"] = args.classes
    return get_space(name, **config)


def register(subparsers: argparse._SubParsersAction) -> None:
    space = subparsers.add_parser("space", help="inspect search spaces")
    commands = space.add_subparsers(dest="space_command", metavar="ACTION")
    commands.required = True

    show = commands.add_parser("show", help="decisions, choices and size of a space")
    show.add_argument("name", help=f"space name ({', '.join(space_names())})")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    add_space_options(show)
    show.set_defaults(handler=_show)

    sample = commands.add_parser("sample", help="sample architecture strings")
    sample.add_argument("name")
    sample.add_argument("-n", type=int, default=1, help="how many")
    sample.add_argument("--seed", type=int, default=0)
    add_space_options(sample)
    sample.set_defaults(handler=_sample)


def _show(args: argparse.Namespace) -> int:
    space = space_from_args(args.name, args)
    summary = space.describe()
    if args.json:
        print_json(summary)
        return 0
    rows = [(d["name"], ", ".join(d["choices"])) for d in summary["decisions"]]
    print_table(f"space '{space.name}': {len(rows)} decisions", ["decision", "choices"], rows)
    print(f"size: {summary['size']:,} architectures (~{float(summary['size']):.2e})")
    return 0


def _sample(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError(f"-n must be at least 1, got {args.n}")
    space = space_from_args(args.name, args)
    rng = random.Random(args.seed)
    for _ in range(args.n):
        print(space.sample(rng))
    return 0
