"""`edgenas runs show RUN_DIR`: what a search found, read from its store (never written)."""

from __future__ import annotations

import argparse
from typing import Any

from edgenas.cli.output import arch_cell, print_json, print_table
from edgenas.search.store import Store
from edgenas.search.trials import TrialRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    runs = subparsers.add_parser("runs", help="inspect search runs")
    commands = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    commands.required = True
    show = commands.add_parser("show", help="counts, best trial and Pareto front of a run")
    show.add_argument("run_dir", help="the --out directory of 'edgenas search'")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.add_argument("--all", action="store_true", help="list every trial, not only the front")
    show.set_defaults(handler=_show)


def trial_json(trial: TrialRecord) -> dict[str, Any]:
    return {
        "id": trial.id,
        "arch": trial.arch,
        "status": trial.status,
        "accuracy": trial.accuracy,
        "latency_ms": trial.latency_ms,
        "reward": trial.reward,
        "metrics": trial.metrics,
        "error": trial.error,
        "seconds": trial.seconds,
    }


def run_summary(store: Store, include_all: bool = False) -> dict[str, Any]:
    """The report's content: counts, best trial by reward, Pareto front (accuracy vs latency)."""
    counts = store.counts()
    status, note = store.status()
    best = store.best()
    summary: dict[str, Any] = {
        "run_dir": str(store.path.parent),
        "config": store.config,
        "status": status,
        "note": note,
        "completed": counts["ok"],
        "failed": counts["failed"],
        "running": counts["running"],
        "best": trial_json(best) if best else None,
        "pareto": [trial_json(t) for t in store.pareto()],
    }
    if include_all:
        summary["trials"] = [trial_json(t) for t in store.trials()]
    return summary


def _fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _rows(trials: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            str(t["id"]), arch_cell(t["arch"]), t["status"], _fmt(t["accuracy"], 100, 2),
            _fmt(t["metrics"].get("test_accuracy"), 100, 2), _fmt(t["latency_ms"]), _fmt(t["reward"], 1, 4),
        ]
        for t in trials
    ]


COLUMNS = ["trial", "arch", "status", "accuracy %", "test accuracy %", "latency ms", "reward"]


def _show(args: argparse.Namespace) -> int:
    with Store.open_existing(args.run_dir) as store:
        summary = run_summary(store, include_all=args.all)
    if args.json:
        print_json(summary)
        return 0
    config = summary["config"]
    print(
        f"run {summary['run_dir']}: space {config.get('space')}, strategy {config.get('strategy')}, "
        f"objective {config.get('objective')}, budget {config.get('budget')}, seed {config.get('seed')}"
    )
    print(
        f"{summary['completed']} completed, {summary['failed']} failed, {summary['running']} in flight; "
        f"status {summary['status']}" + (f" ({summary['note']})" if summary["note"] else "")
    )
    if summary["best"]:
        print_table("best trial (by reward)", COLUMNS, _rows([summary["best"]]))
    print_table(f"Pareto front ({len(summary['pareto'])} trials)", COLUMNS, _rows(summary["pareto"]))
    if args.all:
        print_table("all trials", COLUMNS, _rows(summary["trials"]))
    return 0
