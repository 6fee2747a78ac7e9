"""Re-taking the reference's baseline: every figure calibrated with the old one is carried over
(LUT layers, end-to-end measurements, LUT corrections), so a LUT built while the machine was in a
slow phase is fixed without measuring anything again. Real tiny measurements, a real cache."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from edgenas.latency.cache import LatencyCache, Where
from edgenas.latency.errors import LatencyError
from edgenas.latency.estimator import make_latency_estimator
from edgenas.latency.lut_check import CheckPlan, build_checked
from edgenas.latency.settings import LatencySettings
from latency_helpers import FAST
from test_latency_lut import lut_space


def _estimator(cache):
    return make_latency_estimator(lut_space(), LatencySettings(mode="lut", cache=str(cache), protocol=FAST,
                                                               calibration_archs=4))


def _state(cache, archs):
    """Predictions, cached measurements (ms and ratio) of `archs`, the stored correction and baseline."""
    estimator = _estimator(cache)
    try:
        lut = estimator.lut
        measured = [estimator.measure(arch) for arch in archs]
        return {"predicted": [lut.predict(arch) for arch in archs], "ms": [m.latency_ms for m in measured],
                "ratio": [m.reference_ratio for m in measured], "correction": lut.correction,
                "sources": {m.source for m in measured}, "layers": len(lut)}
    finally:
        estimator.close()


@pytest.fixture
def built(tmp_path):
    cache = tmp_path / "lat.sqlite"
    estimator = _estimator(cache)
    try:
        build_checked(estimator, CheckPlan(target=1.0, tolerance=1.0, held_out=3, step=2, budget_s=600))
        archs = list(estimator.lut.correction["archs"]) + list(estimator.lut.correction["held_out"]["archs"])
        where = estimator.measurer.where
    finally:
        estimator.close()
    db = LatencyCache(str(cache))
    try:
        (name, baseline), = db._db.execute("SELECT reference, baseline_ms FROM baselines").fetchall()
    finally:
        db.close()
    return cache, archs, where, name, baseline


def test_a_new_baseline_rescales_layers_measurements_and_corrections_alike(built):
    """Baseline x1.5 (a baseline taken in a slow phase): every prediction and every cached
    measurement comes out 1.5x what it was, the ratios to the reference and the held-out
    errors do not move, and nothing is measured again."""
    cache, archs, where, name, baseline = built
    before = _state(cache, archs)
    db = LatencyCache(str(cache))
    try:
        report = db.rebase(name, where, 1.5 * baseline, {"medians_ms": [1.5 * baseline]})
        measurements, layers = db.count("measurements"), db.count("lut")
    finally:
        db.close()
    assert report["factor"] == pytest.approx(1.5) and report["old_ms"] == baseline
    assert report["measurements"] == measurements == len(archs) and report["lut"] == layers == before["layers"]
    assert report["lut_corrections"] == 1 and report["corrections_left"] == 0
    after = _state(cache, archs)
    assert after["sources"] == {"cache"}
    assert after["predicted"] == pytest.approx([1.5 * p for p in before["predicted"]], rel=1e-9)
    assert after["ms"] == pytest.approx([1.5 * m for m in before["ms"]], rel=1e-9)
    assert after["ratio"] == pytest.approx(before["ratio"], rel=1e-12)
    old, new = before["correction"], after["correction"]
    assert new["a"] == pytest.approx(old["a"]) and new["b"] == pytest.approx(1.5 * old["b"])
    assert new["held_out"]["errors"] == pytest.approx(old["held_out"]["errors"])
    assert new["baselines"]["measured"] == [name, 1.5 * baseline]


def test_retake_through_the_cli_times_the_reference_again_and_carries_the_lut_over(built, capsys):
    """`edgenas latency baseline --retake` on a cache whose baseline was left 4x too high: the
    reference is timed again (the new baseline lies below 2x the one first taken, nearer it than the
    bad one on a log scale) and the predictions follow it by exactly new / old. The first baseline
    is the fixture's short timing in a fresh process (6 runs, no minimum time), which comes out
    slower than a retake and by up to twice as much on a loaded machine: the lower bound is loose."""
    cache, archs, where, name, baseline = built
    db = LatencyCache(str(cache))
    try:
        db.rebase(name, where, 4.0 * baseline, {})
        # a correction stored by an earlier version records no baselines: left alone, and counted
        db.put_correction("from-an-earlier-version", Where(*where.values()[:3], where.setting + ";ref=network"),
                          {"a": 1.0, "b": 0.0, "c_per_layer": 0.0, "d_per_mvalue": 0.0, "n": 1})
    finally:
        db.close()
    before = _state(cache, archs)
    common = ["latency", "baseline", "--resolution", "48", "--runs", "6", "--warmup", "2", "--min-seconds", "0.3",
              "--cache", cache]
    code, out, err = run_cli([*common, "--retake", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["reference"] == name and result["old_ms"] == pytest.approx(4.0 * baseline)
    assert result["corrections_left"] == 1
    assert 0.25 < result["new_ms"] / baseline < 2.0  # the bad one is 4x off; the retake is timed, not kept
    after = _state(cache, archs)
    assert after["predicted"] == pytest.approx([p * result["factor"] for p in before["predicted"]], rel=1e-9)
    code, out, err = run_cli(common, capsys)
    assert code == 0 and f"baseline {result['new_ms']:.3f} ms" in out, err


def test_bad_baselines_are_refused_before_anything_changes(built, capsys):
    cache, _archs, where, name, baseline = built
    db = LatencyCache(str(cache))
    try:
        with pytest.raises(LatencyError, match="positive time"):
            db.rebase(name, where, 0.0, {})
        with pytest.raises(LatencyError, match="no baseline of nothing"):
            db.rebase("nothing", where, 1.0, {})
        assert db.get_baseline(name, where) == baseline
    finally:
        db.close()
    code, _, err = run_cli(["latency", "baseline", "--resolution", "0", "--cache", cache], capsys)
    assert code == 2 and "resolution" in err and "Traceback" not in err
