"""`edgenas search`: run (or resume) an architecture search into a run directory.

The evaluator kind comes from `edgenas.evaluators.registry`, keyed by `--space`; each kind adds
its own flags (no two kinds and no common flag share a name; `--dataset`, `--device` and
`--data-dir` are common, and their help says what each means for each space). Every input is
checked before the run directory is touched, so a bad flag leaves an existing run as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import TextColumn

from edgenas.cli.output import print_json
from edgenas.errors import UserError
from edgenas.evaluators.base import Evaluator, TrialResult
from edgenas.evaluators.registry import EVALUATORS, get_evaluator_kind
from edgenas.search.executors import Executor, InProcessExecutor
from edgenas.search.front import measure_front
from edgenas.search.loop import run_search
from edgenas.search.objectives import OBJECTIVES, make_objective
from edgenas.search.store import Store
from edgenas.search.trials import TrialRecord
from edgenas.strategies import STRATEGIES, make_strategy
from edgenas.util.progress import progress_bar

# Settings that may change when a run is resumed (raising the budget continues the search).
MUTABLE_CONFIG = ("budget",)
DATASET_HELP = ("nb201: which table columns to search on (cifar10, cifar100, imagenet16-120; default cifar10); "
                "mnas: the images to proxy-train on (digits, the embedded default | cifar10-jpeg[:K] | "
                "cifar10:DIR | cifar100:DIR | folder:DIR)")
DEVICE_HELP = ("latency device. nb201: a column of the latency table (default pixel3); mnas: the remote device "
               "of --latency-backend adb (serial) or ssh (user@host)")
DATA_DIR_HELP = ("nb201: the tables' folder (default $EDGENAS_DATA_DIR/nb201 or ../shared/data/nb201); "
                 "mnas: where the cifar10-jpeg shards are")


class DelayedEvaluator:
    """Sleeps before each evaluation. For tests only (`--eval-delay-ms`, hidden from --help): it
    lets a `kill -9` land mid-search on a table lookup that would otherwise take microseconds."""

    def __init__(self, evaluator: Evaluator, seconds: float) -> None:
        self.evaluator = evaluator
        self.seconds = seconds

    def evaluate(self, arch: str) -> TrialResult:
        time.sleep(self.seconds)
        return self.evaluator.evaluate(arch)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search a space for accurate, fast architectures (rerun on the same --out to resume)",
    )
    parser.add_argument("--space", required=True, help=f"search space ({', '.join(EVALUATORS)})")
    parser.add_argument("--strategy", required=True, help=f"one of {', '.join(STRATEGIES)}")
    parser.add_argument("--objective", default="accuracy", help=f"one of {', '.join(OBJECTIVES)} (default accuracy)")
    parser.add_argument("--target-ms", type=float, default=None, help="latency target T in ms (mnas-soft, mnas-hard, mnas-abs)")
    parser.add_argument("--alpha", type=float, default=None, help="reward exponent when LAT <= T (soft -0.07, hard 0)")
    parser.add_argument("--beta", type=float, default=None, help="reward exponent when LAT > T (soft -0.07, hard -1); mnas-abs: the penalty per unit of |LAT/T - 1| (default -0.07)")
    parser.add_argument("--dataset", default=None, help=DATASET_HELP)
    parser.add_argument("--device", default=None, help=DEVICE_HELP)
    parser.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    parser.add_argument("--budget", type=int, required=True, help="number of distinct architectures to evaluate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="run directory (holds store.sqlite)")
    parser.add_argument(
        "--strategy-option", action="append", default=[], metavar="KEY=VALUE",
        help="strategy hyperparameter, e.g. population_size=20, lr=0.02 (repeatable)",
    )
    parser.add_argument("--parallel", type=int, default=1, help="evaluations in flight at once (default 1)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="where evaluations run: in this process (default) or as Ray tasks")
    parser.add_argument("--ray-address", default=None,
                        help="join this Ray cluster (host:port, ray://host:port, auto); default: start a local one")
    parser.add_argument("--cpus-per-trial", type=float, default=1, help="Ray resources per evaluation (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0, help="Ray resources per evaluation (default 0)")
    parser.add_argument("--ray-latency-cpus", type=float, default=0,
                        help="Ray CPUs reserved by the latency actor that owns the device (default 0; 1 on a cluster)")
    parser.add_argument("--max-repeats", type=int, default=1000, help="stop after this many known architectures proposed in a row")
    parser.add_argument("--eval-delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)  # tests only
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    for kind in EVALUATORS.values():
        kind.add_options(parser)
    parser.set_defaults(handler=_search)


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs, values read as JSON where they parse (numbers, true/false, null; `none` is
    null too, as Python users write it)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--strategy-option '{item}' is not KEY=VALUE; e.g. --strategy-option lr=0.02")
        if text.strip().lower() == "none":
            options[key] = None
            continue
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def resumed_options(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy's options: those of `--strategy-option`, over the stored run's where `--out`
    holds a run of the same strategy. A resumed search so goes on as it started even where a later
    edgenas changed a default; an option given that differs from the stored one is still refused
    when the store is opened (the configs differ)."""
    given = parse_options(args.strategy_option)
    stored = Store.stored_config(args.out)
    if stored is None or stored.get("strategy") != args.strategy:
        return given
    return {**stored.get("strategy_options", {}), **given}


def make_executor(args: argparse.Namespace) -> Executor:
    """The executor the flags ask for; a Ray that is missing or unreachable fails before any write."""
    if args.executor == "local":
        if args.ray_address:
            raise UserError("--ray-address needs --executor ray")
        return InProcessExecutor(args.parallel)
    from edgenas.search.ray_executor import RayExecutor, check_ray_available

    check_ray_available(args.ray_address)
    return RayExecutor(
        slots=args.parallel, address=args.ray_address,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, latency_cpus=args.ray_latency_cpus,
    )


def _search(args: argparse.Namespace) -> int:
    # Everything is checked before the store is opened or created.
    if args.budget < 1:
        raise UserError(f"--budget must be at least 1, got {args.budget}")
    if args.parallel < 1:
        raise UserError(f"--parallel must be at least 1, got {args.parallel}")
    if args.eval_delay_ms < 0:
        raise UserError(f"--eval-delay-ms cannot be negative, got {args.eval_delay_ms}")
    if args.strategy not in STRATEGIES:
        raise UserError(f"unknown strategy '{args.strategy}'; choose one of {', '.join(STRATEGIES)}")
    if args.target_ms is not None and not args.target_ms > 0:
        raise UserError(f"--target-ms must be positive, got {args.target_ms}")
    objective = make_objective(args.objective, args.target_ms, args.alpha, args.beta)
    executor = make_executor(args)
    setup = get_evaluator_kind(args.space).setup(args)
    space, evaluator_config, make_evaluator = setup.space, setup.config, setup.make_evaluator
    strategy = make_strategy(args.strategy, space, args.seed, **resumed_options(args))
    evaluator = make_evaluator(executor)
    config = {
        "space": args.space,
        "strategy": args.strategy,
        "strategy_options": strategy.options(),
        "objective": objective.config(),
        "evaluator": evaluator_config,
        "seed": args.seed,
        "budget": args.budget,
    }
    if args.eval_delay_ms > 0:
        evaluator = DelayedEvaluator(evaluator, args.eval_delay_ms / 1000.0)

    with Store.create_or_resume(args.out, config, mutable=MUTABLE_CONFIG) as store:
        already = store.counts()
        console = Console(stderr=True)
        show = not args.quiet and not args.json
        if show and sum(already.values()):
            console.print(
                f"resuming {store.path}: {already['ok'] + already['failed']} trials done, "
                f"{already['running']} to run again"
            )
        bar = progress_bar(TextColumn("{task.fields[best]}"), console=console, disable=not show)
        with bar:
            task = bar.add_task("search", total=args.budget, best="")

            def progress(done: int, budget: int, best: TrialRecord | None) -> None:
                text = f"best reward {best.reward:.4f}" if best and best.reward is not None else ""
                bar.update(task, completed=done, best=text)

            outcome = run_search(
                space, strategy, evaluator, objective, args.budget,
                store=store, executor=executor, seed=args.seed,
                progress=progress, max_repeats=args.max_repeats,
            )
        counts = store.counts()
        best = store.best()
    front = None
    if setup.front_estimator is not None and counts["ok"]:
        # the search ranked by the LUT's prediction: what a user ships is measured end to end
        front = measure_front(args.out, setup.front_estimator)
    summary = {
        "out": str(args.out),
        "completed": counts["ok"],
        "failed": counts["failed"],
        "stop_reason": outcome.stop_reason,
        "resumed_in_flight": outcome.resumed_trials,
        "best": _trial_json(best),
        "front": front,
    }
    if args.json:
        print_json(summary)
        return 0
    print(f"{counts['ok']} completed, {counts['failed']} failed ({outcome.stop_reason}); run in {args.out}")
    if best is not None:
        print(f"best: {describe_trial(best)}")
    if front:
        errors = [100 * row["error"] for row in front]
        print(f"front: {len(front)} networks measured end to end; the LUT was off by {min(errors):+.1f} % to "
              f"{max(errors):+.1f} % (front.json)")
    print(f"report: edgenas runs show {args.out}", file=sys.stderr)
    return 0


def describe_trial(trial: TrialRecord) -> str:
    """One line: arch, reward, accuracy, latency and (tabular benchmarks) the held-out test accuracy."""
    parts = [trial.arch]
    if trial.reward is not None:
        parts.append(f"reward {trial.reward:.4f}")
    if trial.accuracy is not None:
        parts.append(f"accuracy {100 * trial.accuracy:.2f}%")
    if trial.latency_ms is not None:
        parts.append(f"latency {trial.latency_ms:.3f} ms")
    test = trial.metrics.get("test_accuracy")
    if isinstance(test, (int, float)):
        parts.append(f"test accuracy {100 * test:.2f}%")
    return "  ".join(parts[:1]) + "  " + ", ".join(parts[1:])


def _trial_json(trial: TrialRecord | None) -> dict[str, Any] | None:
    if trial is None:
        return None
    return {
        "id": trial.id,
        "arch": trial.arch,
        "accuracy": trial.accuracy,
        "latency_ms": trial.latency_ms,
        "reward": trial.reward,
        "metrics": trial.metrics,
    }
