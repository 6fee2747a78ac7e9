"""The search loop (any evaluator, K in flight, failures, resume), the CLI's bad input, the report,
and a real `kill -9` of a running search followed by a resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from edgenas.evaluators.base import TrialResult
from edgenas.evaluators.nb201 import NB201Evaluator, load_tables
from edgenas.search.executors import InProcessExecutor
from edgenas.search.loop import run_search
from edgenas.search.objectives import make_objective
from edgenas.search.store import Store
from edgenas.spaces import get_space
from edgenas.strategies import make_strategy

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread


@pytest.fixture(scope="module")
def evaluator(nb201_dir):
    return NB201Evaluator(load_tables(nb201_dir))


class SometimesBroken:
    """A real evaluator wrapper whose evaluations raise for architectures with an avg pool on the
    first edge: the search must record the failure and go on."""

    def __init__(self, inner):
        self.inner = inner

    def evaluate(self, arch: str) -> TrialResult:
        if arch.startswith("|avg_pool_3x3~0|"):
            raise FloatingPointError("loss is NaN")
        return self.inner.evaluate(arch)


def _run(args, capsys):
    return run_cli(args, capsys)


@pytest.mark.parametrize("name", ["random", "evolution", "reinforce", "ppo"])
def test_every_strategy_spends_the_budget_on_distinct_architectures(name, evaluator):
    space = get_space("nb201")
    outcome = run_search(space, make_strategy(name, space, seed=1), evaluator, make_objective("accuracy"), 25)
    archs = [t.arch for t in outcome.trials]
    assert len(archs) == 25 and len(set(archs)) == 25
    assert outcome.completed == 25 and outcome.stop_reason == "budget reached"
    assert outcome.best.reward == max(t.reward for t in outcome.trials)


def test_failures_are_recorded_and_k_in_flight(evaluator):
    space = get_space("nb201")
    outcome = run_search(
        space, make_strategy("ppo", space, seed=2, batch_size=4),
        SometimesBroken(evaluator), make_objective("mnas-soft", target_ms=5.0), 40,
        executor=InProcessExecutor(slots=4),
    )
    assert len(outcome.trials) == 40 and len({t.arch for t in outcome.trials}) == 40
    failed = [t for t in outcome.trials if t.status == "failed"]
    assert failed and all("FloatingPointError: loss is NaN" in t.error and t.reward is None for t in failed)
    assert all(t.arch.startswith("|avg_pool_3x3~0|") for t in failed)


def test_resume_in_process_continues_with_a_larger_budget(tmp_path, evaluator):
    space = get_space("nb201")
    config = {"test": "resume"}
    for budget in (15, 30):
        strategy = make_strategy("ppo", space, seed=3, batch_size=5)
        with Store.create_or_resume(tmp_path, {**config, "budget": budget}, mutable=("budget",)) as store:
            run_search(space, strategy, evaluator, make_objective("accuracy"), budget, store=store, seed=3)
            trials = store.trials()
            checkpoint = store.load_checkpoint()
        assert [t.id for t in trials] == list(range(1, budget + 1))
        assert len({t.arch for t in trials}) == budget
        assert checkpoint["strategy"]["updates"] >= budget // 5


def _store_counts(path) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = dict(db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())
    except sqlite3.OperationalError:
        return 0, 0  # not created yet
    finally:
        db.close()
    return rows.get("ok", 0) + rows.get("failed", 0), rows.get("running", 0)


def _trial_sequence(path) -> list[tuple]:
    """(id, arch, status, reward) of every trial, in id order (rewards rounded past float noise)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT id, arch, status, reward FROM trials ORDER BY id").fetchall()
    finally:
        db.close()
    return [(i, arch, status, None if reward is None else round(reward, 9)) for i, arch, status, reward in rows]


def test_kill_9_then_resume(tmp_path, nb201_dir, request):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "edgenas.cli.main", "search", "--space", "nb201", "--strategy", "ppo",
        "--objective", "mnas-soft", "--target-ms", "10", "--budget", "30", "--seed", "4",
        "--out", str(out), "--data-dir", str(nb201_dir), "--eval-delay-ms", "60", "--quiet",
        "--strategy-option", "batch_size=4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The same command, never interrupted, into another folder (alongside: the evaluations sleep).
    twin_out = tmp_path / "uninterrupted"
    twin_command = [*command[: command.index("--out") + 1], str(twin_out), *command[command.index("--out") + 2 :]]
    twin = subprocess.Popen(twin_command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    request.addfinalizer(lambda: twin.poll() is None and (twin.kill(), twin.wait()))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store_path = out / "store.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and process.poll() is None:
        if store_path.exists():
            done, running = _store_counts(store_path)
            if done >= 8 and running:  # kill while a trial is in flight
                break
        time.sleep(0.02)
    assert process.poll() is None, f"search ended before the kill: {process.stderr.read().decode()}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_at_kill, running_at_kill = _store_counts(store_path)
    assert 8 <= done_at_kill < 30
    db = sqlite3.connect(store_path)
    before = {row[0]: row[1] for row in db.execute("SELECT id, arch FROM trials WHERE status != 'running'")}
    in_flight = {row[0]: row[1] for row in db.execute("SELECT id, arch FROM trials WHERE status = 'running'")}
    db.close()

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    db = sqlite3.connect(store_path)
    rows = db.execute("SELECT id, arch, status FROM trials ORDER BY id").fetchall()
    db.close()
    assert [r[0] for r in rows] == list(range(1, 31))  # 30 trials, none lost, none twice
    assert len({r[1] for r in rows}) == 30
    assert all(r[2] in ("ok", "failed") for r in rows)
    after = {r[0]: r[1] for r in rows}
    assert all(after[i] == arch for i, arch in before.items())  # finished trials kept as they were
    assert all(after[i] == arch for i, arch in in_flight.items())  # the in-flight one ran again
    assert running_at_kill == len(in_flight)

    # Resuming changed nothing: trial for trial (id -> arch, status, reward) the run is the one the
    # same command makes uninterrupted.
    assert twin.wait(timeout=180) == 0, twin.stderr.read().decode()
    twin.stderr.close()
    assert _trial_sequence(store_path) == _trial_sequence(twin_out / "store.sqlite")

    report = subprocess.run(
        [sys.executable, "-m", "edgenas.cli.main", "runs", "show", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    summary = json.loads(report.stdout)
    assert summary["completed"] + summary["failed"] == 30


def test_cli_search_then_runs_show_json(tmp_path, nb201_dir, capsys):
    out = tmp_path / "run"
    args = ["search", "--space", "nb201", "--strategy", "evolution", "--objective", "mnas-hard",
            "--target-ms", "5", "--budget", "20", "--seed", "0", "--out", out, "--data-dir", nb201_dir,
            "--quiet"]
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    assert "20 completed" in stdout
    code, stdout, _ = _run(["runs", "show", out, "--json"], capsys)
    summary = json.loads(stdout)
    assert summary["completed"] == 20 and summary["failed"] == 0
    best = summary["best"]
    assert set(best) >= {"arch", "accuracy", "latency_ms", "reward"}
    # hard reward: at or under 5 ms the reward is the accuracy itself
    if best["latency_ms"] <= 5:
        assert best["reward"] == pytest.approx(best["accuracy"])
    front = summary["pareto"]
    assert front and all(set(t) >= {"arch", "accuracy", "latency_ms", "reward"} for t in front)
    latencies = [t["latency_ms"] for t in front]
    accuracies = [t["accuracy"] for t in front]
    assert latencies == sorted(latencies) and accuracies == sorted(accuracies)
    # Rerunning the same command finds the run complete and evaluates nothing new.
    code, stdout, _ = _run(args, capsys)
    assert code == 0 and "20 completed" in stdout
    code, stdout, _ = _run(["runs", "show", out], capsys)
    assert code == 0 and "Pareto front" in stdout


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_bad_input_is_one_line_exit_2_and_leaves_the_store(tmp_path, nb201_dir, capsys):
    out = tmp_path / "run"
    base = ["search", "--space", "nb201", "--strategy", "random", "--budget", "5", "--seed", "0",
            "--out", out, "--data-dir", nb201_dir, "--quiet"]
    assert _run(base, capsys)[0] == 0
    store = out / "store.sqlite"
    digest = _digest(store)

    def replace(flag, value):
        args = list(base)
        args[args.index(flag) + 1] = value
        return args

    bad = {
        "unknown strategy 'bayes'": replace("--strategy", "bayes"),
        "unknown objective 'speed'": base + ["--objective", "speed"],
        "--budget must be at least 1": replace("--budget", "0"),
        "--target-ms must be positive": base + ["--objective", "mnas-soft", "--target-ms", "0"],
        "no device column 'pixel9'": base + ["--device", "pixel9"],
        "lacks nats_bench.csv": replace("--data-dir", tmp_path),
        "different configuration: seed": replace("--seed", "1"),
        "objective.objective (stored 'accuracy', now 'mnas-soft')": base + ["--objective", "mnas-soft", "--target-ms", "5"],
    }
    for fragment, args in bad.items():
        code, stdout, err = _run(args, capsys)
        assert code == 2, fragment
        assert fragment in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
        assert _digest(store) == digest, f"store changed by: {fragment}"

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "store.sqlite").write_bytes(b"garbage" * 500)
    before = _digest(corrupt / "store.sqlite")
    code, _, err = _run(replace("--out", corrupt), capsys)
    assert code == 2 and "not a readable edgenas store" in err
    assert _digest(corrupt / "store.sqlite") == before
    code, _, err = _run(["runs", "show", corrupt], capsys)
    assert code == 2 and "not a readable edgenas store" in err


def test_strategy_option_none_is_none():
    """`--strategy-option target_kl=none` turns PPO's KL stop off (it used to arrive as the string)."""
    from edgenas.cli.search import parse_options
    from edgenas.spaces import get_space
    from edgenas.strategies import make_strategy

    options = parse_options(["target_kl=none", "backtrack=false", "lr=0.02", "name=x"])
    assert options == {"target_kl": None, "backtrack": False, "lr": 0.02, "name": "x"}
    strategy = make_strategy("ppo", get_space("nb201"), 0, **{k: v for k, v in options.items() if k != "name"})
    assert strategy.target_kl is None


def test_a_resumed_search_keeps_its_stored_strategy_options(tmp_path, nb201_dir, capsys):
    """A run started at other strategy options than today's defaults (as a run stored before a
    default changed is) resumes from the same command without them: its stored options are used.
    An option given that differs from the stored one is still refused, the store untouched."""
    out = tmp_path / "run"
    base = ["search", "--space", "nb201", "--strategy", "ppo", "--seed", "0", "--out", out,
            "--data-dir", nb201_dir, "--quiet"]
    assert _run(base + ["--budget", "6", "--strategy-option", "lr=0.02"], capsys)[0] == 0
    code, stdout, err = _run(base + ["--budget", "12"], capsys)
    assert code == 0, err
    assert "12 completed" in stdout
    with Store.open_existing(out) as store:
        assert store.config["strategy_options"]["lr"] == 0.02 and store.config["budget"] == 12
    digest = _digest(out / "store.sqlite")
    code, _, err = _run(base + ["--budget", "12", "--strategy-option", "lr=0.05"], capsys)
    assert code == 2 and "strategy_options.lr (stored 0.02, now 0.05)" in err
    assert _digest(out / "store.sqlite") == digest
