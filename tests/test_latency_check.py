"""The LUT's self-check: held-out networks judged at build time, more measured until the target or
the budget, the report stored with the correction, and drift flagged by `lut validate`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgenas.latency.cache import LatencyCache
from edgenas.latency.errors import LatencyError
from edgenas.latency.estimator import make_latency_estimator
from edgenas.latency.lut_check import CheckPlan, build_checked, drift, judge, repeatability
from edgenas.latency.settings import LatencySettings
from latency_helpers import FAST
from test_latency_lut import lut_space


def _estimator(cache, calibration=4):
    return make_latency_estimator(lut_space(), LatencySettings(mode="lut", cache=str(cache), protocol=FAST,
                                                               calibration_archs=calibration))


def test_judge_on_known_numbers():
    report = judge([10.0, 20.0, 40.0], [11.0, 19.1, 40.4], tolerance=0.05)
    assert report["errors"] == pytest.approx([0.10, -0.045, 0.01])
    assert report["mean_error_pct"] == pytest.approx(100 * 0.065 / 3)
    assert report["within_tolerance"] == pytest.approx(2 / 3) and report["within_10pct"] == 1.0


def test_drift_is_a_shift_of_the_errors_not_their_noise():
    rng = np.random.default_rng(0)
    built = {"errors": list(rng.normal(0.0, 0.03, 40)), "within_tolerance": 1.0, "n": 40}
    same = {"errors": list(rng.normal(0.0, 0.03, 20))}
    slower = {"errors": list(rng.normal(-0.06, 0.03, 20))}  # the device got 6 % slower than predicted
    tiny_shift = {"errors": list(np.array(built["errors"][:20]) + 0.01)}  # real but below 2 %
    assert drift(same, built)["drifted"] is False
    moved = drift(slower, built)
    assert moved["drifted"] is True and moved["shift_pct"] < -4 and moved["p"] < 1e-3
    assert drift(tiny_shift, built)["drifted"] is False
    assert drift(same, None) is None and drift(same, {"errors": [0.1]}) is None


def test_bad_check_plans_name_the_problem():
    for kwargs, words in (({"target": 0.0}, "share in (0, 1]"), ({"target": 1.5}, "share in (0, 1]"),
                          ({"held_out": 1}, "at least 2 networks"), ({"budget_s": -1}, "budget")):
        with pytest.raises(LatencyError, match=words.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            CheckPlan(**kwargs)


def test_a_build_that_meets_its_target_stops_and_stores_the_held_out_report(tmp_path):
    estimator = _estimator(tmp_path / "lat.sqlite")
    try:
        # every network is within +-100 % of a fitted LUT: the first round meets the target
        report = build_checked(estimator, CheckPlan(target=1.0, tolerance=1.0, held_out=3, step=2, budget_s=600))
        fitted = set(estimator.lut.correction["archs"])
    finally:
        estimator.close()
    assert report["reached"] is True and report["rounds"] == 1 and report["ended"] == "target reached"
    assert report["n"] == 3 == len(report["archs"]) and not set(report["archs"]) & fitted
    cache = LatencyCache(str(tmp_path / "lat.sqlite"))
    try:
        later = _estimator(tmp_path / "lat.sqlite")
        try:
            stored = cache.get_correction(later.lut.name, later.lut.where)
            assert stored["held_out"]["archs"] == report["archs"] and stored["held_out"]["errors"] == report["errors"]
            # validation judges other networks than those the build's check stopped on
            assert not set(later.validation_sample(6)) & set(report["archs"])
        finally:
            later.close()
    finally:
        cache.close()


def test_a_build_below_its_target_measures_more_networks_until_the_budget(tmp_path):
    estimator = _estimator(tmp_path / "lat.sqlite")
    lines = []
    try:
        # nothing is within +-0 %: the check never reaches its target and spends its two rounds
        report = build_checked(estimator, CheckPlan(target=0.5, tolerance=0.0, held_out=3, step=2, budget_s=600,
                                                    max_rounds=2), progress=lines.append)
        correction = estimator.lut.correction
    finally:
        estimator.close()
    assert report["reached"] is False and report["ended"] == "budget spent" and report["rounds"] == 2
    assert report["n"] == 5 and report["calibration_archs"] == 6 == correction["n"]  # both grew by the step
    assert not set(report["archs"]) & set(correction["archs"])
    # each round announces its two phases, then says how it ended
    assert [line.split(":")[0] for line in lines] == ["round 1"] * 3 + ["round 2"] * 3
    assert sum(" held-out within " in line for line in lines) == 2


def test_lut_validate_flags_a_lut_whose_errors_moved_since_the_build(tmp_path, capsys):
    """A correction made 40 % too high after the build stands for a device that became that much faster:
    the build's held-out errors were near 0, the validation's sit near +40 %."""
    cache = tmp_path / "lat.sqlite"
    estimator = _estimator(cache)
    try:
        build_checked(estimator, CheckPlan(target=1.0, tolerance=1.0, held_out=8, step=2, budget_s=600))
        lut = estimator.lut
    finally:
        estimator.close()
    db = LatencyCache(str(cache))
    try:
        stored = db.get_correction(lut.name, lut.where)
        assert stored and "held_out" in stored
    finally:
        db.close()
    moved = {**stored, **{k: 1.4 * stored[k] for k in ("a", "c_per_layer", "d_per_mvalue", "b")}}
    db = LatencyCache(str(cache))
    try:
        db.put_correction(lut.name, lut.where, moved)
    finally:
        db.close()
    later = _estimator(cache)
    try:
        report = later.validate(8, seed=3)
    finally:
        later.close()
    assert report["drift"]["drifted"] is True and report["drift"]["shift_pct"] > 25, report["drift"]
    json.dumps(report)  # the report stays JSON for `lut validate --json`


def _measured(reference_ms: float, baseline_ms: float):
    from edgenas.latency.measurement import Measurement

    return Measurement(median_ms=5.0, p10_ms=4.9, p90_ms=5.1, runs=6, backend="onnxruntime", device="local:test",
                       reference="r", reference_median_ms=reference_ms, reference_ratio=5.0 / reference_ms,
                       reference_baseline_ms=baseline_ms, calibrated_ms=5.0 / reference_ms * baseline_ms)


def test_baseline_check_on_known_numbers():
    from edgenas.latency.lut_check import baseline_check

    medians = [8.0 + 0.1 * i for i in range(20)]  # 10th percentile 8.19 (linear between 8.1 and 8.2)
    slow = baseline_check([_measured(m, 10.35) for m in medians], 10.35)
    assert slow["suspect"] is True and slow["reference_p10_ms"] == pytest.approx(8.19)
    assert slow["off_pct"] == pytest.approx(100 * (10.35 / 8.19 - 1)) and slow["n"] == 20
    assert baseline_check([_measured(m, 8.0) for m in medians], 8.0)["suspect"] is False  # alone: a bit faster
    assert baseline_check([_measured(m, 7.2) for m in medians], 7.2)["suspect"] is False  # 12 % below: typical at 32 px
    assert baseline_check([_measured(m, 6.3) for m in medians], 6.3)["suspect"] is True  # 23 % below: a fluke
    # measurements calibrated with another (older) baseline are not evidence about this one
    assert baseline_check([_measured(m, 9.0) for m in medians], 10.35) is None
    assert baseline_check([_measured(m, 10.35) for m in medians[:9]], 10.35) is None


def test_a_build_says_when_its_baseline_came_from_an_untypical_phase(tmp_path):
    """The stored baseline made twice too high stands for one timed while a neighbour ran: the
    reference inside the new measurements runs faster than it, and the build's check says so.
    (Twice, not a realistic 40 %: the second build's own timings may run slower than the first's
    on a shared machine; CI once saw a 40 % inflation read back as 13 %.)"""
    cache = tmp_path / "lat.sqlite"
    estimator = _estimator(cache)
    try:
        first = build_checked(estimator, CheckPlan(target=1.0, tolerance=1.0, held_out=3, step=2, budget_s=600))
        where = estimator.measurer.where
    finally:
        estimator.close()
    assert first["baseline"] is None  # 7 measurements are too few to judge
    db = LatencyCache(str(cache))
    try:
        (name, ms), = db._db.execute("SELECT reference, baseline_ms FROM baselines").fetchall()
        db.put_baseline(name, where, 2.0 * ms, {"medians_ms": [2.0 * ms]})
        db._db.execute("DELETE FROM measurements")  # measured again under the new baseline
        db._db.commit()
    finally:
        db.close()
    later = _estimator(cache)
    try:
        report = build_checked(later, CheckPlan(target=1.0, tolerance=1.0, held_out=8, step=2, budget_s=600))
    finally:
        later.close()
    assert report["baseline"]["suspect"] is True and report["baseline"]["n"] == 12, report["baseline"]
    assert report["baseline"]["off_pct"] > 20


def test_repeatability_compares_each_second_measurement_with_its_first():
    """Worked by hand: +4 % and +8 % -> mean +6 %, sd 2 %, one of two within 5 %, both within 10 %."""
    report = repeatability([10.0, 20.0], [10.4, 21.6])
    assert report["n"] == 2
    assert report["mean_change_pct"] == pytest.approx(6.0) and report["sd_change_pct"] == pytest.approx(2.0)
    assert report["within_5pct"] == 0.5 and report["within_tolerance"] == 1.0
    with pytest.raises(LatencyError, match="pairs of measurements"):
        repeatability([10.0, 20.0], [10.4])
