"""The Ray executor on a real local Ray cluster (2 CPUs): two proxy trainings at once.

The same short search runs in process and on Ray; both stores must hold the same kind of results.
"""

from __future__ import annotations

import pytest

from edgenas.errors import UserError
from edgenas.executors import InProcessExecutor
from edgenas.objective import make_objective
from edgenas.search import run_search
from edgenas.spaces.mnas import BaseStage
from edgenas.store import Store
from edgenas.strategies import make_strategy
from edgenas.training.loop import TrainConfig
from edgenas.training.proxy import ProxyConfig, ProxyTrainingEvaluator

ray = pytest.importorskip("ray", reason="Ray is an extra: pip install 'edgenas[ray]'")

from edgenas.executors_ray import RayExecutor, connect  # noqa: E402

TINY_SPACE = {
    "base_stages": (BaseStage(16, 1, 1), BaseStage(24, 1, 2)),
    "ops": ("dsconv", "mbconv3"),
    "kernels": (3, 5),
}


def tiny_evaluator() -> ProxyTrainingEvaluator:
    config = ProxyConfig(
        dataset="digits", space_options=TINY_SPACE, subset=200,
        train=TrainConfig(epochs=1, max_steps=3, batch_size=32, lr=0.05), threads=1,
    )
    return ProxyTrainingEvaluator(config)


def search(run_dir, executor) -> list:
    evaluator = tiny_evaluator()
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
    executor = RayExecutor(slots=2, cpus_per_trial=1)
    executor._started_here = False  # the module fixture owns the cluster
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
