"""`edgenas demo`: a tiny version of the main job through its real code path (supernet training on
the embedded digits, PPO over one-shot scores with LUT latency from ONNX Runtime, the store, the
front measured end to end and printed beside the prediction, the report files), and its resume."""

from __future__ import annotations

import json

import pytest

from edgenas.cli.main import main
from edgenas.search.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread


def _demo(out, cache, capsys, budget=3):
    args = ["demo", "--out", out, "--budget", budget, "--supernet-epochs", "1", "--subset", "300",
            "--latency-runs", "3", "--latency-calibration", "2", "--latency-cache", cache, "--quiet"]
    code = main([str(a) for a in args])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def test_tiny_demo_trains_a_supernet_searches_measures_the_front_and_resumes(tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "latency.sqlite"
    code, stdout, stderr = _demo(out, cache, capsys)
    assert code == 0, stderr
    assert "edgenas supernet train --space-preset demo --dataset digits" in stderr
    assert "edgenas search --space mnas --evaluator oneshot" in stderr

    with Store.open_existing(out / "search") as store:
        trials = store.trials()
        front = store.pareto()
        config = store.config
    assert len(trials) == 3 and all(t.status == "ok" for t in trials)
    assert config["strategy"] == "ppo" and config["objective"]["alpha"] == config["objective"]["beta"] == -0.07
    assert config["evaluator"]["evaluator"] == "oneshot"
    assert config["evaluator"]["latency"]["mode"] == "lut" and config["evaluator"]["latency"]["backend"] == "onnxruntime"

    # The front is measured end to end: front.json holds the LUT's prediction beside a measurement.
    measured = json.loads((out / "search" / "front.json").read_text())
    assert [r["arch"] for r in measured] == [t.arch for t in front]
    assert all(r["predicted_ms"] == t.latency_ms for r, t in zip(measured, front))
    assert all(r["measured_ms"] > 0 and r["measured_ms"] != r["predicted_ms"] for r in measured)
    assert "Pareto front" in stdout and f"{measured[0]['measured_ms']:.3f}" in stdout
    assert front[0].arch.split()[0] in stdout
    for name in ("report.md", "pareto.png", "reward_curve.png"):
        assert (out / "search" / name).stat().st_size > 0

    # Rerunning resumes: the supernet is not trained again, nothing is evaluated again.
    weights = (out / "supernet" / "supernet.pt").stat().st_mtime_ns
    code, again, stderr = _demo(out, cache, capsys)
    assert code == 0, stderr
    assert "using the trained supernet" in stderr
    assert (out / "supernet" / "supernet.pt").stat().st_mtime_ns == weights
    with Store.open_existing(out / "search") as store:
        assert [(t.id, t.arch, t.accuracy) for t in store.trials()] == [(t.id, t.arch, t.accuracy) for t in trials]
    assert again.count("Pareto front") == 1


def test_demo_bad_budget_is_one_line(tmp_path, capsys):
    code, stdout, stderr = _demo(tmp_path / "demo", tmp_path / "latency.sqlite", capsys, budget=0)
    assert code == 2 and "--budget" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "demo").exists()


def test_the_demo_states_the_luts_error_as_the_summary_line_and_report_do(tmp_path, capsys):
    from edgenas.cli.demo import print_front

    # A LUT that predicted half the measured time is 50 % under it (front.json's "error"),
    # not "+100 %" (the measurement over the prediction), which is what the table once printed.
    row = {"arch": "ds_r1_k3_s2_c16", "accuracy": 0.7, "predicted_ms": 0.05, "measured_ms": 0.1,
           "error": 0.05 / 0.1 - 1, "params": 1000, "trials": 3}
    print_front([row], tmp_path)
    stdout = capsys.readouterr().out
    assert "-50.0 %" in stdout and "+100" not in stdout, stdout
