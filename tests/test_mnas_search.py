"""`edgenas search --space mnas`: proxy training + measured latency through the real CLI, the space
presets and overrides, what the run config records (and resume checks), and bad input."""

from __future__ import annotations

import pytest

from conftest import run_cli
from edgenas.errors import UserError
from edgenas.search.store import Store
from edgenas.spaces.mnas_choices import mnas_space_for, parse_space_option, space_choices

# A small space so that each candidate trains in well under a second.
TINY_SPACE = ["--space-preset", "demo", "--space-option", "stages=c8_r1_s2,c16_r1_s2",
              "--space-option", "ops=dsconv,mbconv3"]
TINY_PROXY = ["--dataset", "digits", "--proxy-subset", "200", "--proxy-steps", "2",
              "--latency-runs", "3", "--latency-warmup", "1", "--latency-min-seconds", "0.5"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny trainings on one thread


def _run(args, capsys):
    return run_cli(args, capsys)


def _search(out, cache, *extra, budget=2):
    return ["search", "--space", "mnas", "--strategy", "ppo", "--objective", "mnas-soft", "--target-ms", "0.1",
            *TINY_SPACE, *TINY_PROXY, "--latency-cache", cache, "--budget", budget, "--out", out, "--quiet", *extra]


def _digits():
    from edgenas.data import load_dataset

    return load_dataset("digits", "train")


def test_demo_preset_is_narrowed_and_fitted_to_the_dataset():
    space = mnas_space_for(_digits(), space_choices("demo"))
    assert space.config.resolution == 28
    assert space.config.network.in_channels == 1 and space.config.network.num_classes == 10
    assert len(space.decisions) == 6 * 4
    assert space.decisions[0].choices == ("dsconv", "mbconv3", "mbconv6")
    full = mnas_space_for(_digits(), space_choices("full"))
    assert len(full.decisions) == 6 * 7 and full.size() > space.size()


def test_space_options_override_one_choice_list():
    choices = space_choices("demo", ["kernels=3", "stages=c8_r1_s2,c16_r2_s2"])
    assert choices["kernels"] == [3] and choices["ops"] == ["dsconv", "mbconv3", "mbconv6"]
    space = mnas_space_for(_digits(), choices)
    assert len(space.decisions) == 12
    assert space.decisions[1].choices == (3,)
    assert parse_space_option("width_multipliers=0.5, 1.0") == ("width_multipliers", [0.5, 1.0])
    for bad in ("kernel=3", "kernels=", "kernels=three", "nokey"):
        with pytest.raises(UserError):
            parse_space_option(bad)
    with pytest.raises(UserError, match="stage 'c16_r1'"):
        mnas_space_for(_digits(), space_choices("demo", ["stages=c16_r1"]))
    with pytest.raises(UserError, match="unknown space preset"):
        space_choices("huge")


def test_search_trains_measures_records_and_resumes(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "latency.sqlite"
    code, stdout, err = _run(_search(out, cache), capsys)
    assert code == 0, err
    assert "2 completed, 0 failed" in stdout
    with Store.open_existing(out) as store:
        trials = store.trials()
        config = store.config
    assert [t.status for t in trials] == ["ok", "ok"]
    for trial in trials:
        assert 0.0 <= trial.accuracy <= 1.0
        assert trial.latency_ms > 0 and trial.metrics["latency"]["backend"] == "onnxruntime"
        assert trial.metrics["latency"]["threads"] == 1
        assert trial.metrics["params"] > 0 and trial.metrics["macs"] > 0
        assert trial.metrics["train_steps"] == 2 and trial.metrics["val_images"] == 40
        assert trial.reward == pytest.approx(trial.accuracy * (trial.latency_ms / 0.1) ** -0.07)
    evaluator = config["evaluator"]
    assert evaluator["resolution"] == 28 and evaluator["classes"] == 10 and evaluator["in_channels"] == 1
    assert evaluator["space_preset"] == "demo"
    assert evaluator["space_choices"]["stages"] == ["c8_r1_s2", "c16_r1_s2"]
    assert evaluator["latency"] == {"backend": "onnxruntime", "mode": "measure", "threads": 1, "runs": 3,
                                    "warmup": 1, "min_seconds": 0.5, "device": None}
    assert evaluator["proxy"]["subset"] == 200 and evaluator["proxy"]["train"]["max_steps"] == 2

    # The latency cache answers the same architectures again without measuring.
    from edgenas.latency.cache import LatencyCache

    stored = LatencyCache(str(cache))
    assert stored.count("measurements") == 2
    stored.close()

    # Resume with another space: refused, naming the setting; the run is untouched.
    code, _, err = _run(_search(out, cache, "--space-option", "kernels=3"), capsys)
    assert code == 2 and "kernels" in err and len(err.strip().splitlines()) == 1
    # Raising the budget continues the same run.
    code, _, err = _run(_search(out, cache, budget=3), capsys)
    assert code == 0, err
    with Store.open_existing(out) as store:
        again = store.trials()
    assert [t.id for t in again[:2]] == [t.id for t in trials] and len(again) == 3


@pytest.mark.parametrize("extra, message", [
    (["--proxy-subset", "9999"], "fewer than the 9999"),
    (["--device", "pixel3"], "remote device"),
    (["--space-option", "stages=c8_r1_s2,c8_r1_s2,c8_r1_s2,c8_r1_s2,c8_r1_s2"], "total stride"),
    (["--latency-backend", "tpu"], "unknown latency backend"),
    (["--dataset", "cifar10-jpeg", "--data-dir", "/nonexistent/edgenas"], "/nonexistent/edgenas"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code, stdout, err = _run(_search(out, tmp_path / "latency.sqlite", *extra), capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("mode", ["measure", "lut"])
def test_a_trial_decodes_its_architecture_string_once(tmp_path, monkeypatch, mode):
    """From the evaluator to a latency number (measured, or predicted by the LUT) the string is
    decoded once: every block token goes through `decode_block` exactly one time."""
    import argparse
    import random

    from edgenas.evaluators.mnas import setup
    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.reference import network_reference
    from edgenas.latency.settings import LatencySettings
    from edgenas.search.executors import InProcessExecutor
    from edgenas.spaces import blockstrings
    from latency_helpers import FAST

    args = argparse.Namespace(dataset="digits", data_dir=None, device=None, space_preset="demo", seed=0,
                              space_option=["stages=c8_r1_s2,c16_r1_s2", "ops=dsconv,mbconv3"],
                              proxy_subset=200, proxy_steps=2, latency_mode=mode,
                              latency_cache=str(tmp_path / "lat.sqlite"))
    space, _config, make_evaluator, _front = setup(args)
    settings = LatencySettings(mode=mode, protocol=FAST, calibration_archs=2, cache=args.latency_cache)

    class FastLatency(InProcessExecutor):
        """The search's own estimator, on the quick test protocol (the extension point a Ray executor uses)."""

        def latency_service(self, make_estimator):
            return make_latency_estimator(space, settings)

    evaluator = make_evaluator(FastLatency())
    if mode == "lut":
        _ = evaluator.latency_source.lut  # calibrated before counting (it measures its own networks)
    network_reference(evaluator.latency_source.input_shape)  # the reference's own string, decoded once per process
    arch = space.sample(random.Random(5))
    calls = []
    real = blockstrings.decode_block
    monkeypatch.setattr(blockstrings, "decode_block", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    result = evaluator.evaluate(arch)
    assert result.ok, result.error
    assert result.latency_ms > 0 and result.metrics["latency"]["source"] == ("lut" if mode == "lut" else "measured")
    assert calls == arch.split()  # each block of the string decoded once, in order


def test_a_search_on_the_lut_measures_its_front_end_to_end_and_reports_both(tmp_path, capsys):
    """The search ranks by the LUT's prediction; the front it ends with is then measured end to end,
    and front.json and the report put the prediction beside the measurement."""
    import json

    from edgenas.latency.cache import LatencyCache
    from edgenas.report import write_report

    out, cache = tmp_path / "run", tmp_path / "latency.sqlite"
    code, stdout, err = _run(_search(out, cache, "--latency-mode", "lut", "--latency-calibration", "3", budget=4),
                             capsys)
    assert code == 0, err
    with Store.open_existing(out) as store:
        front = store.pareto()
        assert all(t.metrics["latency"]["source"] == "lut" for t in store.trials("ok"))
    rows = json.loads((out / "front.json").read_text())
    assert [r["arch"] for r in rows] == [t.arch for t in front]
    stored = LatencyCache(str(cache))
    try:  # every front network was measured end to end (the cache holds its measurement)
        measured_archs = {arch for (arch,) in stored._db.execute("SELECT arch FROM measurements")}
    finally:
        stored.close()
    assert {r["arch"] for r in rows} <= measured_archs
    for row, trial in zip(rows, front):
        assert row["predicted_ms"] == trial.latency_ms and row["measured_ms"] > 0
        assert row["measured_ms"] != row["predicted_ms"]  # a measurement, not the prediction copied
        assert row["error"] == pytest.approx(row["predicted_ms"] / row["measured_ms"] - 1)
    assert "measured end to end" in stdout
    markdown = write_report(out).markdown.read_text()
    assert "| LUT (ms) | measured (ms) | LUT error |" in markdown
    assert f"{rows[0]['measured_ms']:.3f}" in markdown
