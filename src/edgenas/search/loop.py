"""The search loop: ask the strategy, evaluate, score, tell, record; resume after a kill.

Why it is written this way: the loop joins parts that know nothing of one another. It takes ANY
evaluator (a table, a proxy training, a phone), ANY executor (in process, Ray) and ANY strategy,
and writes every step to the store in the same transaction as the strategy's checkpoint, so
that stopping the process at any instant loses nothing and double-counts nothing.

Budget: the number of distinct architectures evaluated (trials). When a strategy proposes one it
has already seen, it is told the stored result again at no cost, as MnasNet re-uses the rewards
of repeated samples; a strategy that proposes only known architectures `max_repeats` times in a
row has converged, and the search stops early, saying so.

Evaluators for the `edgenas search` command are found by space name through
`register_evaluator`, so another module can add one (a proxy-training evaluator for `mnas`, say)
without touching this loop.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgenas.errors import UserError
from edgenas.evaluators.base import Evaluator, TrialResult
from edgenas.search.executors import Executor, InProcessExecutor
from edgenas.search.objectives import Objective
from edgenas.spaces.base import SearchSpace
from edgenas.search.store import Store, TrialRecord, best_trial
from edgenas.strategies.base import Strategy

Progress = Callable[[int, int, TrialRecord | None], None]


# ---- the evaluator registry (used by `edgenas search`) ------------------------------------------
@dataclass(frozen=True)
class EvaluatorPlugin:
    """How `edgenas search --space NAME` gets its evaluator.

    `make(args, space, executor)` builds the evaluator from the parsed CLI options (raise
    UserError for bad ones); an evaluator that measures latency gets its estimator from
    `executor.latency_service(factory)`, so that parallel trials never share the device;
    `add_options(parser)` adds the plugin's own flags to `edgenas search` (they must not clash
    with the common ones, see `docs/search.md`); `config(args)` returns the settings that
    identify a run (compared on resume); `make_space(args)` builds the space when it needs
    options (default: `get_space(NAME)`).
    """

    space: str
    make: Callable[[argparse.Namespace, SearchSpace, Executor], Evaluator]
    add_options: Callable[[argparse.ArgumentParser], None] | None = None
    config: Callable[[argparse.Namespace], dict[str, Any]] | None = None
    make_space: Callable[[argparse.Namespace], SearchSpace] | None = None


_EVALUATORS: dict[str, EvaluatorPlugin] = {}


def register_evaluator(plugin: EvaluatorPlugin) -> None:
    _EVALUATORS[plugin.space] = plugin


def evaluator_plugins() -> dict[str, EvaluatorPlugin]:
    return dict(_EVALUATORS)


def get_evaluator_plugin(space: str) -> EvaluatorPlugin:
    try:
        return _EVALUATORS[space]
    except KeyError:
        names = ", ".join(sorted(_EVALUATORS)) or "none registered"
        raise UserError(f"no evaluator for space '{space}'; spaces with one: {names}") from None


class DelayedEvaluator:
    """Sleeps before each evaluation. For tests only: it lets a `kill -9` land mid-search on a
    table lookup that would otherwise finish in microseconds. The result is the real one."""

    def __init__(self, evaluator: Evaluator, seconds: float) -> None:
        self.evaluator = evaluator
        self.seconds = seconds

    def evaluate(self, arch: str) -> TrialResult:
        time.sleep(self.seconds)
        return self.evaluator.evaluate(arch)


# ---- the loop -----------------------------------------------------------------------------------
class MemoryLog:
    """The store's bookkeeping without a file, for benchmarks that run thousands of searches."""

    def __init__(self) -> None:
        self.records: dict[int, TrialRecord] = {}

    def begin_trial(self, arch: str, seed: int | None, checkpoint: Any = None) -> int:
        trial_id = len(self.records) + 1
        self.records[trial_id] = TrialRecord(trial_id, arch, "running", seed=seed, started=time.time())
        return trial_id

    def restart_trial(self, trial_id: int) -> None:
        self.records[trial_id].started = time.time()

    def finish_trial(self, trial_id: int, result: TrialResult, reward: float | None, seconds: float, checkpoint: Any = None) -> None:
        record = self.records[trial_id]
        if record.status != "running":
            raise RuntimeError(f"trial {trial_id} is not running; refusing to record it twice")
        record.status = "ok" if result.ok else "failed"
        record.accuracy, record.latency_ms, record.reward = result.accuracy, result.latency_ms, reward
        record.metrics, record.error = dict(result.metrics), result.error
        record.finished, record.seconds = time.time(), seconds

    def trials(self, status: str | None = None) -> list[TrialRecord]:
        return [r for r in self.records.values() if status is None or r.status == status]

    def load_checkpoint(self) -> None:
        return None

    def set_status(self, status: str, note: str | None = None) -> None:
        pass


@dataclass
class SearchOutcome:
    trials: list[TrialRecord]
    stop_reason: str
    asks: int = 0
    repeats: int = 0
    resumed_trials: int = 0
    best: TrialRecord | None = field(default=None)

    @property
    def completed(self) -> int:
        return sum(t.status == "ok" for t in self.trials)

    @property
    def failed(self) -> int:
        return sum(t.status == "failed" for t in self.trials)


def run_search(
    space: SearchSpace,
    strategy: Strategy,
    evaluator: Evaluator,
    objective: Objective,
    budget: int,
    *,
    store: Store | None = None,
    executor: Executor | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    max_repeats: int = 1000,
) -> SearchOutcome:
    """Evaluate up to `budget` distinct architectures; resume from `store` if it holds a run.

    Trials in the store are the run's memory: finished ones are never evaluated again (their
    results answer repeated proposals), trials left `running` by a killed process are submitted
    again first, and the strategy is restored from the checkpoint written with the last trial.
    """
    if budget < 1:
        raise UserError(f"--budget must be at least 1, got {budget}")
    log: Store | MemoryLog = store if store is not None else MemoryLog()
    executor = executor or InProcessExecutor()
    persist = store is not None

    state = log.load_checkpoint()
    deferred: dict[str, int] = {}
    if state is not None:
        strategy.load_state_dict(state["strategy"])
        deferred = {arch: int(n) for arch, n in state["deferred"].items()}

    def checkpoint() -> dict[str, Any]:
        return {"strategy": strategy.state_dict(), "deferred": dict(deferred)}

    ckpt = checkpoint if persist else None
    known: dict[str, TrialRecord] = {t.arch: t for t in log.trials() if t.status != "running"}
    resubmit = log.trials("running")
    resumed = len(resubmit)
    in_flight: dict[int, str] = {}
    finished = len(known)
    asks = repeats = repeats_in_a_row = 0
    stop_reason = "budget reached"

    def tell(arch: str, record: TrialRecord, times: int = 1) -> None:
        for _ in range(times):
            strategy.tell(arch, record.reward, record.result)

    executor.open(evaluator)
    try:
        if progress:
            progress(finished, budget, best_trial(list(known.values())))
        while True:
            # Fill the free slots: first with trials a killed run left in flight, then new ones.
            while resubmit and executor.in_flight() < executor.slots:
                record = resubmit.pop(0)
                log.restart_trial(record.id)
                executor.submit(record.id, record.arch)
                in_flight[record.id] = record.arch
            while (
                not resubmit
                and executor.in_flight() < executor.slots
                and finished + len(in_flight) < budget
                and repeats_in_a_row < max_repeats
            ):
                candidate = strategy.ask()
                asks += 1
                arch = candidate.arch
                if arch in known:
                    repeats += 1
                    repeats_in_a_row += 1
                    tell(arch, known[arch])
                    continue
                if arch in in_flight.values():
                    repeats += 1
                    repeats_in_a_row += 1
                    deferred[arch] = deferred.get(arch, 0) + 1
                    continue
                repeats_in_a_row = 0
                trial_id = log.begin_trial(arch, seed, checkpoint=ckpt)
                executor.submit(trial_id, arch)
                in_flight[trial_id] = arch
            if repeats_in_a_row >= max_repeats and not in_flight:
                stop_reason = f"the strategy proposed {max_repeats} known architectures in a row (converged)"
                break
            if executor.in_flight() == 0:
                break
            for done in executor.wait_any():
                arch = in_flight.pop(done.trial_id)
                reward = objective.reward(done.result)
                record = TrialRecord(
                    done.trial_id, arch, "ok" if done.result.ok else "failed",
                    done.result.accuracy, done.result.latency_ms, reward,
                    dict(done.result.metrics), done.result.error, seed,
                )
                tell(arch, record, 1 + deferred.pop(arch, 0))
                log.finish_trial(done.trial_id, done.result, reward, done.seconds, checkpoint=ckpt)
                known[arch] = record
                finished += 1
                if progress:
                    progress(finished, budget, best_trial(list(known.values())))
        log.set_status("done" if finished >= budget else "stopped", stop_reason)
    finally:
        executor.close()
    trials = log.trials()
    return SearchOutcome(
        trials=trials,
        stop_reason=stop_reason,
        asks=asks,
        repeats=repeats,
        resumed_trials=resumed,
        best=best_trial(trials),
    )
