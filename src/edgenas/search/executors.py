"""Where evaluations run. The search loop talks to an `Executor` and never knows which one.

Why an interface: an evaluation may be a table lookup (microseconds), a proxy training (minutes
on a GPU) or a latency measurement on a phone held by one worker. The loop only needs to hand out
work and collect whatever finishes first, so that K evaluations can be in flight at once:

    executor.open(evaluator)            # once, before any work
    executor.submit(trial_id, arch)     # at most `executor.slots` in flight
    for done in executor.wait_any():    # blocks until at least one finishes
        ...                             # done.trial_id, done.arch, done.result, done.seconds
    executor.close()

`InProcessExecutor` runs each evaluation in the calling process when `wait_any` is called. A Ray
executor (a separate module) implements the same four methods with remote actors.
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgenas.errors import UserError
from edgenas.evaluators.base import Evaluator, TrialResult


@dataclass(frozen=True)
class Completed:
    """One finished evaluation: the trial it belongs to, its result and its wall-clock seconds."""

    trial_id: int
    arch: str
    result: TrialResult
    seconds: float


class Executor(ABC):
    """Runs evaluations, up to `slots` at once.

    Contract: `open(evaluator)` is called once before `submit`; `submit` never blocks for the
    evaluation itself; `wait_any` returns at least one `Completed` when anything is in flight
    (and an empty list when nothing is); an evaluator that raises becomes a failed `TrialResult`
    with the error text, never an exception out of the executor; `close` is safe to call twice.
    """

    slots: int = 1

    @abstractmethod
    def open(self, evaluator: Evaluator) -> None: ...

    @abstractmethod
    def submit(self, trial_id: int, arch: str) -> None: ...

    @abstractmethod
    def wait_any(self) -> list[Completed]: ...

    @abstractmethod
    def in_flight(self) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional hook, most executors hold nothing
        """Release workers; nothing to do in process."""

    def latency_service(self, make_estimator: Callable[[], Any]) -> Any:
        """What evaluations ask for latency: an object with `latency(arch) -> Measurement`.

        `make_estimator` is a picklable zero-argument factory. In one process evaluations run one
        at a time, so the estimator itself serves them; executors whose evaluations run at once
        elsewhere override this so that two measurements never share the device.
        """
        return make_estimator()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_safely(evaluator: Evaluator, arch: str) -> tuple[TrialResult, float]:
    """Evaluate and time one architecture; any exception becomes a failed result with its reason."""
    start = time.perf_counter()
    try:
        result = evaluator.evaluate(arch)
        if not isinstance(result, TrialResult):
            result = TrialResult.failed(f"evaluator returned {type(result).__name__}, not TrialResult")
    except Exception as error:  # noqa: BLE001 - a bad candidate must not crash the search
        last = traceback.extract_tb(error.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        result = TrialResult.failed(f"{type(error).__name__}: {error}{where}")
    return result, time.perf_counter() - start


class InProcessExecutor(Executor):
    """Evaluations run one at a time in this process, in submission order, inside `wait_any`.

    `slots > 1` still runs them one by one, but lets the strategy propose K architectures ahead
    of their results, exactly as it would with K workers (useful to test asynchronous behaviour).
    """

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise UserError(f"an executor needs at least one slot, got {slots}")
        self.slots = slots
        self._queue: deque[tuple[int, str]] = deque()
        self._evaluator: Evaluator | None = None

    def open(self, evaluator: Evaluator) -> None:
        self._evaluator = evaluator

    def submit(self, trial_id: int, arch: str) -> None:
        if self._evaluator is None:
            raise RuntimeError("InProcessExecutor.submit before open()")
        if len(self._queue) >= self.slots:
            raise RuntimeError(f"all {self.slots} slots are busy; call wait_any() first")
        self._queue.append((trial_id, arch))

    def wait_any(self) -> list[Completed]:
        if not self._queue:
            return []
        assert self._evaluator is not None
        trial_id, arch = self._queue.popleft()
        result, seconds = evaluate_safely(self._evaluator, arch)
        return [Completed(trial_id, arch, result, seconds)]

    def in_flight(self) -> int:
        return len(self._queue)
