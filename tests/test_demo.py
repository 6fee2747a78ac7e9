"""`edgenas demo`: a tiny version of the main job through its real code path (PPO, soft reward,
proxy training on the embedded digits, measured ONNX Runtime latency, the store, the printed
front, the report files), and its resume."""

from __future__ import annotations

import pytest

from edgenas.cli.main import main
from edgenas.search.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread


def _demo(out, cache, capsys, budget=3):
    args = ["demo", "--out", out, "--budget", budget, "--proxy-subset", "200", "--proxy-steps", "2",
            "--latency-runs", "3", "--latency-cache", cache, "--quiet"]
    code = main([str(a) for a in args])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def test_tiny_demo_searches_prints_the_front_and_resumes(tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "latency.sqlite"
    code, stdout, stderr = _demo(out, cache, capsys)
    assert code == 0, stderr
    assert "edgenas search --space mnas --space-preset demo --dataset digits --strategy ppo" in stderr

    with Store.open_existing(out) as store:
        trials = store.trials()
        front = store.pareto()
        config = store.config
    assert len(trials) == 3 and all(t.status == "ok" for t in trials)
    assert config["space"] == "mnas" and config["strategy"] == "ppo"
    assert config["objective"]["alpha"] == config["objective"]["beta"] == -0.07
    assert config["evaluator"]["dataset"] == "digits" and config["evaluator"]["space_preset"] == "demo"
    assert config["evaluator"]["latency"]["backend"] == "onnxruntime"
    assert config["evaluator"]["latency"]["threads"] == 1

    # The printed table is the store's front, fastest first, with accuracy, latency and params.
    assert "Pareto front" in stdout
    lines = stdout.splitlines()
    rows = []
    for trial in front:
        # A row: the first block beside the figures, then one block per line below it.
        blocks = trial.arch.split()
        first = next(i for i, line in enumerate(lines)
                     if f"{trial.latency_ms:.3f}" in line and f"{trial.metrics['params']:,}" in line)
        arch_cells = [line.split("\u2502")[1].strip() for line in lines[first:first + len(blocks)]]
        assert arch_cells == blocks
        rows.append(first)
    assert rows == sorted(rows)
    for name in ("report.md", "pareto.png", "reward_curve.png"):
        assert (out / name).stat().st_size > 0
    assert front[0].arch in (out / "report.md").read_text()

    # Rerunning resumes: nothing is evaluated again, the same front is printed.
    code, again, stderr = _demo(out, cache, capsys)
    assert code == 0, stderr
    with Store.open_existing(out) as store:
        assert [(t.id, t.arch, t.accuracy) for t in store.trials()] == [(t.id, t.arch, t.accuracy) for t in trials]
    assert again.count("Pareto front") == 1 and f"{front[-1].latency_ms:.3f}" in again


def test_demo_bad_budget_is_one_line(tmp_path, capsys):
    code, stdout, stderr = _demo(tmp_path / "demo", tmp_path / "latency.sqlite", capsys, budget=0)
    assert code == 2 and "--budget" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "demo").exists()
