"""One contract, two trial logs: the SQLite Store and the in-memory MemoryLog behave the same.

The search loop writes through `TrialLog` and cannot tell the two apart; this suite is the
definition of that sameness (as Optuna runs one suite over every storage). Store-only behaviour
(resume across processes, config checks, corrupt files) is in test_store.py.
"""

from __future__ import annotations

import pytest
import torch

from edgenas.evaluators.base import TrialResult
from edgenas.search.memory import MemoryLog
from edgenas.search.store import Store
from edgenas.search.trials import best_trial, pareto_trials

CONFIG = {"space": "nb201", "strategy": "ppo", "seed": 0, "budget": 10}


@pytest.fixture(params=["store", "memory"])
def log(request, tmp_path):
    if request.param == "memory":
        yield MemoryLog()
        return
    with Store.create_or_resume(tmp_path / "run", CONFIG) as store:
        yield store


def test_trials_are_numbered_in_order_and_read_back_as_written(log):
    a = log.begin_trial("a", seed=0)
    b = log.begin_trial("b", seed=7)
    assert (a, b) == (1, 2)
    log.finish_trial(b, TrialResult(accuracy=0.8, latency_ms=2.0, metrics={"k": [1, 2]}), 0.95, 0.5)
    log.finish_trial(a, TrialResult.failed("out of memory"), None, 0.1)
    first, second = log.trials()
    assert (first.arch, first.status, first.error, first.reward) == ("a", "failed", "out of memory", None)
    assert (second.arch, second.status, second.seed, second.accuracy, second.latency_ms, second.reward,
            second.metrics, second.seconds) == ("b", "ok", 7, 0.8, 2.0, 0.95, {"k": [1, 2]}, 0.5)
    assert [t.arch for t in log.trials("ok")] == ["b"] and [t.arch for t in log.trials("failed")] == ["a"]
    assert log.trials("running") == []


def test_a_trial_is_recorded_once_and_an_architecture_is_one_trial(log):
    trial = log.begin_trial("a", seed=0)
    log.finish_trial(trial, TrialResult(accuracy=0.5, latency_ms=1.0), 0.5, 0.1)
    with pytest.raises(RuntimeError, match="not running; refusing to record it twice"):
        log.finish_trial(trial, TrialResult(accuracy=0.9, latency_ms=1.0), 0.9, 0.1)
    with pytest.raises(RuntimeError, match="not running"):
        log.finish_trial(99, TrialResult(accuracy=0.9, latency_ms=1.0), 0.9, 0.1)
    with pytest.raises(ValueError, match="already a trial"):
        log.begin_trial("a", seed=0)
    assert [(t.arch, t.accuracy) for t in log.trials()] == [("a", 0.5)]  # the refused writes changed nothing


def test_the_checkpoint_is_the_one_saved_with_the_latest_state_change(log):
    assert log.load_checkpoint() is None
    a = log.begin_trial("a", seed=0, checkpoint=lambda: {"step": 1, "w": torch.ones(2)})
    assert log.load_checkpoint()["step"] == 1
    log.begin_trial("b", seed=0)  # no checkpoint given: the last one stays
    assert log.load_checkpoint()["step"] == 1
    weights = torch.zeros(2)
    log.finish_trial(a, TrialResult(accuracy=0.5, latency_ms=1.0), 0.5, 0.1,
                     checkpoint=lambda: {"step": 2, "w": weights})
    weights += 5  # the log holds what was saved, not a live reference
    state = log.load_checkpoint()
    assert state["step"] == 2 and torch.equal(state["w"], torch.zeros(2))


def test_restart_keeps_a_running_trial_running_and_leaves_finished_ones(log):
    a = log.begin_trial("a", seed=0)
    b = log.begin_trial("b", seed=0)
    log.finish_trial(b, TrialResult(accuracy=0.5, latency_ms=1.0), 0.5, 0.1)
    finished_before = log.trials("ok")[0].finished
    log.restart_trial(a)
    log.restart_trial(b)
    assert [t.arch for t in log.trials("running")] == ["a"]
    assert log.trials("ok")[0].finished == finished_before
    log.finish_trial(a, TrialResult(accuracy=0.7, latency_ms=3.0), 0.7, 0.1)  # still finishable once


def test_best_and_front_read_the_same_from_both(log):
    for arch, acc, lat, reward in [("a", 0.9, 10.0, 0.9), ("b", 0.8, 2.0, 0.95), ("c", 0.7, 5.0, 0.7)]:
        log.finish_trial(log.begin_trial(arch, 0), TrialResult(accuracy=acc, latency_ms=lat), reward, 0.1)
    assert best_trial(log.trials()).arch == "b"  # by reward, not accuracy
    assert [t.arch for t in pareto_trials(log.trials())] == ["b", "a"]  # c is slower and worse than b


def test_status_is_kept(log):
    log.set_status("stopped", "the strategy converged")
    assert log.status() == ("stopped", "the strategy converged")
