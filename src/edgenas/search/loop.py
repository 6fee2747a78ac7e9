"""The search loop: ask the strategy, evaluate, score, tell, record; resume after a kill.

Why it is written this way: the loop joins parts that know nothing of one another. It takes ANY
evaluator (a table, a proxy training, a phone), ANY executor (in process, Ray) and ANY strategy,
and writes every step to the store in the same transaction as the strategy's checkpoint, so
that stopping the process at any instant loses nothing and double-counts nothing.

Budget: the number of distinct architectures evaluated (trials). When a strategy proposes one it
has already seen, it is told the stored result again at no cost, as MnasNet re-uses the rewards
of repeated samples; a strategy that proposes only known architectures `max_repeats` times in a
row has converged, and the search stops early, saying so.

Where the trials are written is a `TrialLog`: the SQLite `Store` of a run directory, or the
in-memory `MemoryLog` when no store is given (benchmarks running thousands of searches).

What the strategy says of itself is kept with each finished trial, in its metrics (the store's
schema stays as it is): `metrics["strategy"]` is `strategy.diagnostics()` right after it was told
the result (a controller's entropy, ratio range and KL of its latest update; nothing for a strategy
with no diagnostics), and `metrics["search"]` the run's proposals so far (`asks`), how many were
of architectures already evaluated or in flight (`repeats`) and their share (`repeat_rate`), counted
over the whole run, across resumes (the counts travel in the checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from edgenas.errors import UserError
from edgenas.evaluators.base import Evaluator
from edgenas.search.executors import Executor, InProcessExecutor
from edgenas.search.memory import MemoryLog
from edgenas.search.objectives import Objective
from edgenas.search.trials import TrialLog, TrialRecord, best_trial
from edgenas.spaces.base import SearchSpace
from edgenas.strategies.base import Strategy

Progress = Callable[[int, int, TrialRecord | None], None]


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
    store: TrialLog | None = None,
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
    log: TrialLog = store if store is not None else MemoryLog()
    executor = executor or InProcessExecutor()
    persist = store is not None

    state = log.load_checkpoint()
    deferred: dict[str, int] = {}
    run_asks = run_repeats = 0  # over the whole run, resumes included (this process's: asks, repeats)
    if state is not None:
        strategy.load_state_dict(state["strategy"])
        deferred = {arch: int(n) for arch, n in state["deferred"].items()}
        run_asks, run_repeats = int(state.get("asks", 0)), int(state.get("repeats", 0))

    def checkpoint() -> dict[str, Any]:
        return {"strategy": strategy.state_dict(), "deferred": dict(deferred), "asks": run_asks,
                "repeats": run_repeats}

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
                run_asks += 1
                arch = candidate.arch
                if arch in known:
                    repeats += 1
                    run_repeats += 1
                    repeats_in_a_row += 1
                    tell(arch, known[arch])
                    continue
                if arch in in_flight.values():
                    repeats += 1
                    run_repeats += 1
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
                record.metrics.update(_diagnostics(strategy, run_asks, run_repeats))
                result = replace(done.result, metrics=dict(record.metrics))
                log.finish_trial(done.trial_id, result, reward, done.seconds, checkpoint=ckpt)
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


def _diagnostics(strategy: Strategy, asks: int, repeats: int) -> dict[str, Any]:
    """What is stored beside a finished trial's own metrics: the strategy's diagnostics and the
    run's repeat rate so far."""
    extra: dict[str, Any] = {"search": {"asks": asks, "repeats": repeats,
                                        "repeat_rate": repeats / asks if asks else 0.0}}
    diagnostics = strategy.diagnostics()
    if diagnostics:
        extra["strategy"] = dict(diagnostics)
    return extra
