"""`edgenas report RUN_DIR`: the Pareto plot, the reward curve and the front as a table."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="write pareto.png, reward_curve.png and report.md of a run")
    report.add_argument("run_dir", help="the --out directory of a search")
    report.add_argument("--out", default=None, help="where to write the files (default: RUN_DIR)")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from edgenas.report import write_report  # matplotlib: imported only by the command that plots

    files = write_report(args.run_dir, args.out)
    for path in (files.pareto_png, files.reward_png, files.markdown):
        print(path)
    return 0
