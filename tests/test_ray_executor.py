"""The Ray executor on a real local Ray cluster (2 CPUs): two proxy trainings at once.

The same short search runs in process and on Ray; both stores must hold the same kind of results.
"""

from __future__ import annotations

import pytest

from edgenas.errors import UserError
from edgenas.search.executors import InProcessExecutor
from edgenas.search.loop import run_search
from edgenas.search.objectives import make_objective
from edgenas.search.store import Store
from edgenas.spaces import fitted_space
from edgenas.spaces.mnas import BaseStage
from edgenas.strategies import make_strategy
from edgenas.training.loop import TrainConfig
from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator

ray = pytest.importorskip("ray", reason="Ray is an extra: pip install 'edgenas[ray]'")

from edgenas.search.ray_executor import RayExecutor, connect  # noqa: E402

TINY_SPACE = {
    "base_stages": (BaseStage(16, 1, 1), BaseStage(24, 1, 2)),
    "ops": ("dsconv", "mbconv3"),
    "kernels": (3, 5),
}


def tiny_evaluator() -> ProxyTrainingEvaluator:
    config = ProxyConfig(
        dataset="digits", subset=200,
        train=TrainConfig(epochs=1, max_steps=3, batch_size=32, lr=0.05), threads=1,
    )
    return ProxyTrainingEvaluator(config, fitted_space("mnas", (1, 28, 28), 10, **TINY_SPACE))


def search(run_dir, executor, evaluator=None) -> list:
    evaluator = evaluator or tiny_evaluator()
    space = evaluator.space
    store = Store.create_or_resume(run_dir, {"space": "mnas", "executor": type(executor).__name__})
    with store:
        run_search(space, make_strategy("random", space, seed=3), evaluator, make_objective("accuracy"),
                   budget=4, store=store, executor=executor, seed=3)
        return store.trials()


@pytest.fixture(scope="module")
def ray_cluster():
    connect(None, num_cpus=2)
    yield
    ray.shutdown()


def test_two_trials_at_once_on_ray_match_in_process(tmp_path, ray_cluster):
    executor = RayExecutor(slots=2, cpus_per_trial=1)  # joins the fixture's cluster, leaves it running
    ray_trials = search(tmp_path / "ray", executor)
    local_trials = search(tmp_path / "local", InProcessExecutor(1))
    assert [t.status for t in ray_trials] == ["ok"] * 4, [t.error for t in ray_trials]
    # Same seed and strategy: the same architectures, trained the same deterministic way.
    assert sorted(t.arch for t in ray_trials) == sorted(t.arch for t in local_trials)
    by_arch = {t.arch: t for t in local_trials}
    for trial in ray_trials:
        twin = by_arch[trial.arch]
        assert set(trial.metrics) == set(twin.metrics)
        assert trial.accuracy == pytest.approx(twin.accuracy, abs=1e-6)
    # Two ran at once: their wall-clock intervals overlap.
    spans = sorted((t.started, t.finished) for t in ray_trials)
    assert any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))


def test_latency_goes_through_one_actor_that_never_measures_two_at_once(tmp_path, ray_cluster):
    """Two trials train at once; their latencies are measured by the actor, one after the other."""
    import functools

    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.protocol import Protocol
    from edgenas.latency.settings import LatencySettings

    executor = RayExecutor(slots=2, cpus_per_trial=1)
    probe = tiny_evaluator()
    settings = LatencySettings(protocol=Protocol(runs=5, warmup=1), cache=str(tmp_path / "latency.sqlite"))
    client = executor.latency_service(functools.partial(make_latency_estimator, probe.space, settings))
    evaluator = ProxyTrainingEvaluator(probe.config, probe.space, latency=client)
    trials = search(tmp_path / "ray", executor, evaluator)
    assert [t.status for t in trials] == ["ok"] * 4, [t.error for t in trials]
    assert all(t.latency_ms is not None and t.latency_ms > 0 for t in trials), [(t.latency_ms, t.metrics) for t in trials]
    assert client.stats()["served"] == 4
    # The actor measured with the real backend and stored each network in its own cache file.
    from edgenas.latency.cache import LatencyCache

    cache = LatencyCache(settings.cache)
    try:
        assert cache.count() >= len({t.arch for t in trials})
    finally:
        cache.close()


def _measuring_processes() -> set[int]:
    """Pids of latency measuring subprocesses (`edgenas.latency.worker`) started under this test
    process (its Ray cluster's actors among them), read from /proc."""
    import os

    mine = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as file:
                if b"edgenas.latency.worker" not in file.read():
                    continue
            pid = int(entry.name)
            ancestor = pid
            while ancestor > 1 and ancestor != os.getpid():
                with open(f"/proc/{ancestor}/stat") as file:
                    ancestor = int(file.read().rsplit(")", 1)[1].split()[1])
            if ancestor == os.getpid():
                mine.add(pid)
        except (OSError, ValueError, IndexError):
            continue  # it ended while being read
    return mine


def test_two_callers_at_once_are_served_one_after_the_other(tmp_path, ray_cluster):
    """Two requests in flight together (two caller threads, as two trials would ask), and still
    measured one at a time: the measuring processes on the device never overlap."""
    import functools
    import os
    import random
    import threading
    import time

    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.protocol import Protocol
    from edgenas.latency.settings import LatencySettings

    if not os.path.isdir("/proc/self"):
        pytest.skip("watching the measuring processes needs /proc")
    space = tiny_evaluator().space
    rng = random.Random(7)
    archs: list[str] = []
    while len(archs) < 3:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    # Enough runs that one measurement takes a good fraction of a second; never from the cache.
    protocol = Protocol(runs=300, warmup=5, retries=0, baseline_repeats=1)
    settings = LatencySettings(protocol=protocol, cache=str(tmp_path / "latency.sqlite"))
    client = RayExecutor(slots=2).latency_service(functools.partial(make_latency_estimator, space, settings))
    client.latency(archs[0])  # the reference's baseline is measured here, once

    barrier = threading.Barrier(3)
    spans: dict[str, tuple[float, float]] = {}
    results: dict[str, object] = {}
    seen: set[int] = set()
    most_alive = 0
    watching = threading.Event()

    def ask(arch: str) -> None:
        barrier.wait()
        asked = time.perf_counter()
        try:
            results[arch] = client.latency(arch)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            results[arch] = error
        spans[arch] = (asked, time.perf_counter())

    def watch() -> None:
        nonlocal most_alive
        barrier.wait()
        while not watching.is_set():
            alive = _measuring_processes()
            seen.update(alive)
            most_alive = max(most_alive, len(alive))
            time.sleep(0.005)

    callers = [threading.Thread(target=ask, args=(arch,)) for arch in archs[1:]]
    watcher = threading.Thread(target=watch)
    for thread in [watcher, *callers]:
        thread.start()
    for thread in callers:
        thread.join(timeout=120)
    watching.set()
    watcher.join()
    assert all(getattr(r, "latency_ms", 0) > 0 for r in results.values()), results
    (first_asked, first_done), (second_asked, _) = sorted(spans.values(), key=lambda s: s[1])
    # (a) From the callers' side both requests were in flight at once ...
    assert max(first_asked, second_asked) < first_done
    # (b) ... and the device measured them one after the other: two measuring processes were
    # seen, never both alive; the actor never had two requests in progress.
    assert len(seen) == 2 and most_alive == 1, (seen, most_alive)
    assert client.stats() == {"served": 3, "most_at_once": 1}


def test_unreachable_address_is_a_user_error():
    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(UserError, match="cannot reach a Ray cluster"):
        connect("127.0.0.1:1")


def test_search_cli_refuses_dead_ray_address_before_writing(tmp_path, capsys):
    from edgenas.cli.main import main

    out = tmp_path / "run"
    code = main(["search", "--space", "nb201", "--strategy", "random", "--budget", "2",
                 "--executor", "ray", "--ray-address", "127.0.0.1:9", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot reach a Ray cluster" in err
    assert not out.exists()


def test_mnas_search_cli_on_ray_measures_latency_through_the_actor(tmp_path, capsys):
    """`edgenas search --space mnas --executor ray`: the plugin asks the executor for latency."""
    from conftest import run_cli
    from test_mnas_search import TINY_PROXY, TINY_SPACE

    if ray.is_initialized():
        ray.shutdown()
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        ["search", "--space", "mnas", "--strategy", "random", "--objective", "mnas-soft", "--target-ms", "0.1",
         *TINY_SPACE, *TINY_PROXY, "--latency-cache", tmp_path / "latency.sqlite", "--budget", "2",
         "--executor", "ray", "--parallel", "2", "--out", out, "--quiet"], capsys)
    assert code == 0, err
    assert not ray.is_initialized()  # the cluster it started is shut down
    with Store.open_existing(out) as store:
        trials = store.trials()
    assert [t.status for t in trials] == ["ok", "ok"], [t.error for t in trials]
    for trial in trials:
        assert trial.latency_ms > 0 and trial.metrics["latency"]["source"] == "measured"


def test_oneshot_trials_on_ray_match_in_process(tmp_path, ray_cluster):
    """The one-shot evaluator travels to Ray workers without its tensors (each reloads the supernet
    directory) and scores exactly as in this process."""
    from edgenas.evaluators.oneshot import OneShotEvaluator
    from edgenas.supernet.training import SupernetSettings, train_supernet
    from test_supernet import TINY_SETTINGS

    train_supernet(tmp_path / "supernet", SupernetSettings(**TINY_SETTINGS), progress=False)
    ray_trials = search(tmp_path / "ray", RayExecutor(slots=2, cpus_per_trial=1), OneShotEvaluator(tmp_path / "supernet"))
    local_trials = search(tmp_path / "local", InProcessExecutor(1), OneShotEvaluator(tmp_path / "supernet"))
    assert [t.status for t in ray_trials] == ["ok"] * 4, [t.error for t in ray_trials]
    by_arch = {t.arch: t.accuracy for t in local_trials}
    assert {t.arch: t.accuracy for t in ray_trials} == by_arch
