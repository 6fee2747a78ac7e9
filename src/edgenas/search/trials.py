"""What a search remembers of each trial, and the contract of the logs that remember it.

`TrialLog` is the one protocol the search loop writes through; two logs keep it: the SQLite
`Store` (a run directory: kill-safe, resumable) and `MemoryLog` (nothing on disk, for benchmarks
that run thousands of searches). One contract test runs over both (`tests/test_trial_logs.py`),
as Optuna runs one suite over every storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from edgenas.evaluators.base import TrialResult
from edgenas.search.objectives import pareto_front

Checkpoint = Callable[[], Any] | None


@dataclass
class TrialRecord:
    """One row of `trials`, as the report and the search loop read it."""

    id: int
    arch: str
    status: str
    accuracy: float | None = None
    latency_ms: float | None = None
    reward: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seed: int | None = None
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None

    @property
    def result(self) -> TrialResult:
        return TrialResult(self.status, self.accuracy, self.latency_ms, self.error, dict(self.metrics))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrialLog(Protocol):
    """Where the loop records trials. Every call is one state change, applied whole or not at all.

    `begin_trial` records a proposed architecture as running (with the strategy state that
    proposed it) and returns its id (a second trial of the same architecture is a ValueError); `finish_trial` records its outcome (with the state after the
    strategy learned from it) and refuses a trial that is not running; `restart_trial` marks a
    trial left running by a killed process as started again; `load_checkpoint` returns the last
    state saved with a trial (None if none); `trials(status)` lists trials in id order.
    """

    def begin_trial(self, arch: str, seed: int | None, checkpoint: Checkpoint = None) -> int: ...

    def restart_trial(self, trial_id: int) -> None: ...

    def finish_trial(self, trial_id: int, result: TrialResult, reward: float | None, seconds: float,
                     checkpoint: Checkpoint = None) -> None: ...

    def trials(self, status: str | None = None) -> list[TrialRecord]: ...

    def load_checkpoint(self) -> Any | None: ...

    def set_status(self, status: str, note: str | None = None) -> None: ...

    def status(self) -> tuple[str, str | None]: ...


def best_trial(trials: list[TrialRecord]) -> TrialRecord | None:
    scored = [t for t in trials if t.status == "ok" and t.reward is not None]
    return max(scored, key=lambda t: (t.reward, -t.id)) if scored else None


def pareto_trials(trials: list[TrialRecord]) -> list[TrialRecord]:
    measured = [t for t in trials if t.status == "ok" and t.accuracy is not None and t.latency_ms is not None]
    return pareto_front(measured, accuracy=lambda t: t.accuracy, latency=lambda t: t.latency_ms)
