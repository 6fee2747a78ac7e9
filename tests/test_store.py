"""The SQLite run store: resume, config checks, corrupt files (the log contract: test_trial_logs.py)."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
import torch

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.search.store import Store

CONFIG = {"space": "nb201", "strategy": "ppo", "strategy_options": {"lr": 0.01}, "seed": 0, "budget": 10}


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_trials_checkpoints_best_and_front(tmp_path):
    with Store.create_or_resume(tmp_path / "run", CONFIG) as store:
        assert store.path.name == "store.sqlite"
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        a = store.begin_trial("a", seed=0, checkpoint=lambda: {"step": 1, "w": torch.ones(2)})
        b = store.begin_trial("b", seed=0)
        c = store.begin_trial("c", seed=0)
        store.finish_trial(a, TrialResult(accuracy=0.9, latency_ms=10.0, metrics={"k": 1}), 0.9, 0.5)
        store.finish_trial(b, TrialResult(accuracy=0.8, latency_ms=2.0), 0.95, 0.5,
                           checkpoint=lambda: {"step": 2, "w": torch.zeros(2)})
        assert store.counts() == {"running": 1, "ok": 2, "failed": 0}
        store.finish_trial(c, TrialResult.failed("out of memory"), None, 0.1)
        with pytest.raises(RuntimeError, match="twice"):
            store.finish_trial(c, TrialResult(accuracy=0.1, latency_ms=1.0), 0.1, 0.1)
        with pytest.raises(ValueError, match="already a trial"):
            store.begin_trial("a", seed=0)  # one trial per architecture
        assert store.counts() == {"running": 0, "ok": 2, "failed": 1}
        assert store.best().arch == "b"  # by reward, not accuracy
        assert [t.arch for t in store.pareto()] == ["b", "a"]
        failed = store.trials("failed")[0]
        assert failed.error == "out of memory" and failed.reward is None
        assert store.trials("ok")[0].metrics == {"k": 1}
        state = store.load_checkpoint()
        assert state["step"] == 2 and torch.equal(state["w"], torch.zeros(2))


def test_resume_same_config_and_mutable_budget(tmp_path):
    with Store.create_or_resume(tmp_path, CONFIG) as store:
        store.finish_trial(store.begin_trial("a", 0), TrialResult(accuracy=0.5, latency_ms=1.0), 0.5, 0.1)
        experiment = store.experiment_id
    with Store.create_or_resume(tmp_path, {**CONFIG, "budget": 20}, mutable=("budget",)) as store:
        assert store.experiment_id == experiment
        assert [t.arch for t in store.trials()] == ["a"]
        assert store.config["budget"] == 20


def test_different_config_is_refused_and_the_store_is_untouched(tmp_path):
    with Store.create_or_resume(tmp_path, CONFIG) as store:
        store.finish_trial(store.begin_trial("a", 0), TrialResult(accuracy=0.5, latency_ms=1.0), 0.5, 0.1)
    path = Store.path_for(tmp_path)
    before = _digest(path)
    changed = {**CONFIG, "strategy_options": {"lr": 0.02}, "seed": 3}
    with pytest.raises(UserError, match=r"different configuration: seed .*strategy_options\.lr"):
        Store.create_or_resume(tmp_path, changed, mutable=("budget",))
    with pytest.raises(UserError, match="budget"):
        Store.create_or_resume(tmp_path, {**CONFIG, "budget": 11})  # not mutable unless said so
    assert _digest(path) == before


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b""])
def test_corrupt_or_foreign_files_are_refused_untouched(tmp_path, content):
    path = Store.path_for(tmp_path)
    if content:
        path.write_bytes(content)
    else:  # a real SQLite file, but not ours
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE songs (title TEXT)")
        db.commit()
        db.close()
    before = _digest(path)
    with pytest.raises(UserError, match="not a readable edgenas store"):
        Store.create_or_resume(tmp_path, CONFIG)
    with pytest.raises(UserError, match="not a readable edgenas store"):
        Store.open_existing(tmp_path)
    assert _digest(path) == before


def test_truncated_store_is_refused(tmp_path):
    with Store.create_or_resume(tmp_path, CONFIG) as store:
        for k in range(50):
            store.finish_trial(store.begin_trial(f"arch{k}" * 20, 0), TrialResult(accuracy=0.5, latency_ms=1.0), 0.5, 0.1)
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Store.path_for(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="edgenas store"):
        Store.open_existing(tmp_path)


def test_open_existing_without_a_run(tmp_path):
    with pytest.raises(UserError, match="no search run"):
        Store.open_existing(tmp_path)


def test_a_full_disk_mid_run_is_one_line_and_the_run_resumes(tmp_path, nb201_dir):
    """SQLite's own 'database or disk is full' (max_page_count reached, as a full disk would)
    stops the search with a UserError; nothing half-written: the store reopens and the same run
    continues to exactly the trials an uninterrupted run makes."""
    from edgenas.evaluators.nb201 import NB201Evaluator, load_tables
    from edgenas.search.loop import run_search
    from edgenas.search.objectives import make_objective
    from edgenas.spaces import get_space
    from edgenas.strategies import make_strategy

    evaluator = NB201Evaluator(load_tables(nb201_dir))
    space = get_space("nb201")

    def search(run_dir, fill_after=None):
        with Store.create_or_resume(run_dir, CONFIG) as store:
            class FillsTheDisk:
                def evaluate(self, arch):
                    if fill_after is not None and len(store.trials()) > fill_after:
                        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
                        store._db.execute(f"PRAGMA max_page_count = {pages}")
                    return evaluator.evaluate(arch)

            run_search(space, make_strategy("evolution", space, seed=1), FillsTheDisk(),
                       make_objective("accuracy"), 40, store=store, seed=1)
            return [(t.id, t.arch, t.status, t.reward) for t in store.trials()]

    expected = search(tmp_path / "reference")
    with pytest.raises(UserError) as raised:
        search(tmp_path / "full", fill_after=10)
    message = str(raised.value)
    assert "disk is full" in message and "rerun the same command to resume" in message and "\n" not in message
    assert search(tmp_path / "full") == expected
