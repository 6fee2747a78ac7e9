"""Reliability: one writer per run directory, and kill storms on the long jobs.

A kill storm starts the real command again and again, kills it with SIGKILL at random moments,
lets it finish, and compares what it wrote with an uninterrupted run of the same command: nothing
lost, nothing counted twice, the same result.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pytest

from killstorm import EDGENAS, ENV, KILLS, kill_storm, run


def _trials(store_path) -> list[tuple]:
    try:
        db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return []  # not created yet
    try:
        return db.execute("SELECT id, arch, status, reward, accuracy, latency_ms FROM trials ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []  # no tables yet
    finally:
        db.close()


def _finished(store_path) -> int:
    return sum(1 for t in _trials(store_path) if t[2] != "running")


def _nb201_search(out, nb201_dir, budget=60, delay_ms=20):
    return ["search", "--space", "nb201", "--strategy", "ppo", "--objective", "mnas-soft", "--target-ms", "10",
            "--budget", budget, "--seed", 5, "--out", out, "--data-dir", nb201_dir, "--eval-delay-ms", delay_ms,
            "--quiet", "--strategy-option", "batch_size=4"]


@pytest.mark.slow
def test_kill_storm_on_an_nb201_ppo_search_loses_and_doubles_nothing(tmp_path, nb201_dir):
    reference = run(_nb201_search(tmp_path / "uninterrupted", nb201_dir))
    assert reference.returncode == 0, reference.stderr
    expected = _trials(tmp_path / "uninterrupted" / "store.sqlite")

    out = tmp_path / "stormed"
    store = out / "store.sqlite"
    progress = []

    def ready() -> bool:  # kill only once the run has finished a trial more than at the last kill
        done = _finished(store)
        return done > (progress[-1] if progress else 0)

    landed = 0
    for kill in range(KILLS):
        landed += kill_storm(_nb201_search(out, nb201_dir), 1, seed=kill, ready=ready, max_delay=0.2)
        progress.append(_finished(store))
    assert landed == KILLS and progress[-1] < 60, progress  # every kill landed mid-run
    final = run(_nb201_search(out, nb201_dir))
    assert final.returncode == 0, final.stderr
    assert _trials(store) == expected  # same trials, same order, same results: none lost, none twice


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, nb201_dir):
    out = tmp_path / "run"
    store = out / "store.sqlite"
    # 0.5 s per trial: the first must still be running when the second has started up, which takes
    # several seconds on a loaded machine (at 0.1 s the first had finished all 30 by then).
    command = [*EDGENAS, *map(str, _nb201_search(out, nb201_dir, budget=30, delay_ms=500))]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while _finished(store) < 2 and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read().decode()
        second = run(_nb201_search(out, nb201_dir, budget=30, delay_ms=500))
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert f"pid {first.pid}" in lines[0] and "being written by another process" in lines[0]
        shown = run(["runs", "show", out, "--json"])  # a reader is never refused
        assert shown.returncode == 0, shown.stderr
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0, first.stderr.read().decode()
    trials = _trials(store)
    assert [t[0] for t in trials] == list(range(1, 31)) and all(t[2] == "ok" for t in trials)


def test_the_lock_dies_with_its_process(tmp_path):
    """A writer killed with SIGKILL leaves no stale lock: the next one gets it at once."""
    import os
    import signal
    import sys

    from edgenas.errors import UserError
    from edgenas.util.lock import WriterLock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from edgenas.util.lock import WriterLock; "
        f"WriterLock.for_directory({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        WriterLock.for_directory(tmp_path).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with WriterLock.for_directory(tmp_path) as lock:
        assert lock.held


def test_a_killed_measurers_model_files_are_removed_by_the_next_measurer(tmp_path):
    """kill -9 leaves a measurer's temporary directory (the models it timed) behind; the next
    measurer removes it, and never one whose process lives, one made just now, or one not ours."""
    import os
    import signal
    import sys

    from edgenas.util.scratch import ScratchDirectory, remove_orphans

    holder = subprocess.Popen([sys.executable, "-c", (
        f"import tempfile, time; tempfile.tempdir = {str(tmp_path)!r}; "
        "from edgenas.latency.backends import get_backend; from edgenas.latency.protocol import Measurer; "
        "m = Measurer(get_backend('onnxruntime')); print('made', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "made"
    [left] = tmp_path.glob("edgenas-latency-*")
    an_hour_ago = time.time() - 3600
    os.utime(left, (an_hour_ago, an_hour_ago))
    assert remove_orphans("edgenas-latency-", tmp_path) == [] and left.is_dir()  # its process lives
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    os.utime(left)
    assert remove_orphans("edgenas-latency-", tmp_path) == [] and left.is_dir()  # too young to judge
    os.utime(left, (an_hour_ago, an_hour_ago))
    not_ours = tmp_path / "edgenas-latency-of-someone-else"
    not_ours.mkdir()
    os.utime(not_ours, (an_hour_ago, an_hour_ago))
    fresh = ScratchDirectory("edgenas-latency-", tmp_path)
    assert not left.exists() and not_ours.is_dir() and fresh.path.is_dir()
    fresh.cleanup()
    assert not fresh.path.exists()


def test_sigterm_stops_a_search_like_ctrl_c_and_it_resumes(tmp_path, nb201_dir):
    import signal

    out = tmp_path / "run"
    store = out / "store.sqlite"
    command = [*EDGENAS, *map(str, _nb201_search(out, nb201_dir, budget=30, delay_ms=50))]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _finished(store) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines() == ["edgenas: stopped by SIGTERM; rerun the same command to resume"]
    stopped_at = _finished(store)
    assert 3 <= stopped_at < 30
    resumed = run(_nb201_search(out, nb201_dir, budget=30, delay_ms=50))
    assert resumed.returncode == 0, resumed.stderr
    trials = _trials(store)
    assert [t[0] for t in trials] == list(range(1, 31)) and all(t[2] == "ok" for t in trials)


def _darts_search(out, epochs=8):
    return ["darts", "search", "--dataset", "digits8", "--layers", "3", "--channels", "4", "--batch-size", "16",
            "--limit", "200", "--steps-per-epoch", "2", "--epochs", epochs, "--seed", "1", "--out", out,
            "--no-progress", "--hessian-iterations", "2"]  # the eigenvalue is in every epoch's record, cheaply


def _darts_epochs(out) -> list[dict]:
    import json

    try:
        history = json.loads((out / "history.json").read_text())
    except (OSError, ValueError):
        return []
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@pytest.mark.slow
def test_kill_storm_on_a_darts_search_resumes_bit_exactly(tmp_path):
    import torch

    reference = run(_darts_search(tmp_path / "uninterrupted"))
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "stormed"
    seen: list[int] = []

    def ready() -> bool:  # one more epoch finished since the last kill
        return len(_darts_epochs(out)) > (seen[-1] if seen else 0)

    landed = 0
    for kill in range(KILLS):
        landed += kill_storm(_darts_search(out), 1, seed=100 + kill, ready=ready, max_delay=0.1)
        seen.append(len(_darts_epochs(out)))
    assert landed == KILLS and seen[-1] < 8, seen
    final = run(_darts_search(out))
    assert final.returncode == 0, final.stderr
    assert _darts_epochs(out) == _darts_epochs(tmp_path / "uninterrupted")
    a = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "uninterrupted" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _lut_build(cache):
    return ["latency", "lut", "build", "--space", "mnas", "--resolution", "32", "--classes", "10", "--runs", "3",
            "--warmup", "1", "--min-seconds", "0", "--cache", cache, "--sample", "3", "--calibration", "3",
            "--layer-passes", "1", "--held-out", "0", "--json"]


def _lut_rows(cache) -> dict[tuple[str, str], str]:
    """(layer, input shape) -> the stored entry's data (its timings: changed only if re-timed)."""
    try:
        db = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return {}
    try:
        return {(r[0], r[1]): r[2] for r in db.execute("SELECT layer, input_shape, data FROM lut")}
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def _lut_build_progress(cache) -> int:
    """How many things the build has stored: layer entries, end-to-end measurements, baselines."""
    try:
        db = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return sum(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                   for table in ("lut", "measurements", "baselines"))
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_kill_storm_on_a_lut_build_keeps_finished_layers_and_times_none_twice(tmp_path):
    import json

    reference = run(_lut_build(tmp_path / "reference.sqlite"))
    assert reference.returncode == 0, reference.stderr
    expected = json.loads(reference.stdout)
    cache = tmp_path / "stormed.sqlite"
    kept: dict[tuple[str, str], str] = {}
    landed, sizes, progress = 0, [], [0]
    for kill in range(20):
        # each kill waits until the restarted build has stored something new (a chunk of layers, a
        # calibration network, the baseline), then up to 0.3 s more: a kill timed from the start found
        # the build done after a few restarts on a fast machine, or still starting up on a loaded one
        hit = kill_storm(_lut_build(cache), 1, seed=200 + kill, max_delay=0.3,
                         ready=lambda: _lut_build_progress(cache) > progress[-1])
        rows = _lut_rows(cache)
        assert all(rows[key] == data for key, data in kept.items())  # nothing finished was timed again
        kept = rows
        sizes.append(len(rows))
        progress.append(_lut_build_progress(cache))
        landed += hit
        if not hit:
            break  # the build finished before its kill
    assert landed >= 4, (landed, progress)  # it stores ~8 things; each landed kill came after a new one
    final = run(_lut_build(cache))
    assert final.returncode == 0, final.stderr
    rows = _lut_rows(cache)
    assert all(rows[key] == data for key, data in kept.items())
    assert set(rows) == set(_lut_rows(tmp_path / "reference.sqlite"))  # the same layers, each once
    assert any(0 < n < len(rows) for n in sizes), sizes  # some kill landed between two stored chunks
    summary = json.loads(final.stdout)
    assert summary["layers"] == expected["layers"] and summary["lut_entries"] == expected["lut_entries"]
    assert summary["correction"]["n"] == expected["correction"]["n"] == 3


def _mnas_search(out, cache):
    return ["search", "--space", "mnas", "--strategy", "ppo", "--objective", "mnas-soft", "--target-ms", "0.1",
            "--space-preset", "demo", "--space-option", "stages=c8_r1_s2,c16_r1_s2", "--space-option",
            "ops=dsconv,mbconv3", "--dataset", "digits", "--proxy-subset", "120", "--proxy-steps", "2",
            "--latency-runs", "3", "--latency-warmup", "1", "--latency-min-seconds", "0", "--latency-cache", cache,
            "--budget", "12", "--seed", "3", "--strategy-option", "batch_size=4", "--out", out, "--quiet"]


@pytest.mark.slow
def test_kill_storm_on_a_tiny_mnas_proxy_search_loses_and_doubles_nothing(tmp_path):
    """Proxy training is seeded and the latencies come from one cache (filled by the uninterrupted
    run), so the stormed run must make exactly the same trials with the same results."""
    cache = tmp_path / "latency.sqlite"
    reference = run(_mnas_search(tmp_path / "uninterrupted", cache))
    assert reference.returncode == 0, reference.stderr
    expected = _trials(tmp_path / "uninterrupted" / "store.sqlite")
    assert len(expected) == 12 and all(t[2] == "ok" for t in expected)
    out = tmp_path / "stormed"
    store = out / "store.sqlite"
    progress: list[int] = []
    landed = 0
    for kill in range(KILLS):
        landed += kill_storm(_mnas_search(out, cache), 1, seed=300 + kill,
                             ready=lambda: _finished(store) > (progress[-1] if progress else 0), max_delay=0.3)
        progress.append(_finished(store))
    assert landed == KILLS and progress[-1] < 12, progress
    final = run(_mnas_search(out, cache))
    assert final.returncode == 0, final.stderr
    assert _trials(store) == expected


@pytest.mark.slow
def test_a_phone_unplugged_mid_search_fails_its_trials_with_the_reason_and_the_search_goes_on(
        tmp_path, monkeypatch, capsys):
    """The adb backend through its real transport, against the stand-in `adb` on PATH (no phone is
    attached to these machines): after two trials the phone disappears from `adb devices`."""
    import json
    import os
    import sys
    from pathlib import Path

    from conftest import run_cli
    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.settings import LatencySettings
    from edgenas.search.loop import run_search
    from edgenas.search.objectives import make_objective
    from edgenas.search.store import Store
    from edgenas.spaces import fitted_space
    from edgenas.spaces.mnas import BaseStage
    from edgenas.strategies import make_strategy
    from edgenas.training.loop import TrainConfig
    from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator
    from latency_helpers import FAST, need_litert

    need_litert()
    standins = Path(__file__).parent / "standins"
    phone = tmp_path / "phone"
    monkeypatch.setenv("PATH", f"{standins}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EDGENAS_STANDIN_PYTHON", sys.executable)
    monkeypatch.setenv("EDGENAS_STANDIN_ROOT", str(phone))
    monkeypatch.setenv("EDGENAS_STANDIN_DEVICES", "phone-1")
    (phone / "data/local/tmp").mkdir(parents=True)
    (phone / "data/local/tmp/benchmark_model").write_text("stand-in binary")

    space = fitted_space("mnas", (1, 28, 28), 10, base_stages=(BaseStage(8, 1, 2), BaseStage(16, 1, 2)),
                         ops=("dsconv", "mbconv3"), kernels=(3, 5), width_multipliers=(1.0,), layer_deltas=(0,))
    estimator = make_latency_estimator(space, LatencySettings(backend="adb", protocol=FAST, reference=None,
                                                              cache=str(tmp_path / "latency.sqlite")))
    proxy = ProxyTrainingEvaluator(ProxyConfig(dataset="digits", subset=100, device="cpu",
                                               train=TrainConfig(max_steps=2, batch_size=32)), space,
                                   latency=estimator)

    class Unplugged:
        """The proxy evaluator; the phone is unplugged after its second evaluation."""

        calls = 0

        def evaluate(self, arch):
            if Unplugged.calls == 2:
                monkeypatch.setenv("EDGENAS_STANDIN_DEVICES", "")
            Unplugged.calls += 1
            return proxy.evaluate(arch)

    with Store.create_or_resume(tmp_path / "run", {"test": "unplugged"}) as store:
        outcome = run_search(space, make_strategy("random", space, seed=0), Unplugged(),
                             make_objective("mnas-soft", target_ms=1.0), 4, store=store, seed=0)
    estimator.close()
    statuses = [t.status for t in outcome.trials]
    assert statuses == ["ok"] * 2 + ["failed"] * 2, [t.error for t in outcome.trials]
    assert all(t.latency_ms > 0 for t in outcome.trials[:2])
    assert all("latency:" in t.error and "adb" in t.error for t in outcome.trials[2:]), [t.error for t in outcome.trials]
    code, out, _err = run_cli(["latency", "backends", "--json"], capsys)
    adb = next(b for b in json.loads(out)["backends"] if b["name"] == "adb")
    assert code == 0 and not adb["usable"] and adb["reason"] == "no adb device is attached"
