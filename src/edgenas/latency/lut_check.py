"""A LUT that checks itself: judged on held-out networks at build time, and for drift later.

Why: a search that takes its latency from the LUT inherits the LUT's error, and that error depends
on the host, the runtime and the calibration networks drawn (docs/bench/latency.md). So a build
does not stop at the fit: it measures networks never fitted on, and while fewer of them than the
target lie within the tolerance and time is left, it measures more calibration networks (a better
fit) and more held-out ones (a tighter estimate), refits and judges again. Then it says which
ended it: the target reached, or the budget spent. The held-out report is stored with the
correction, so that `lut validate` can tell a LUT whose errors have moved since it was built
(`drift`), i.e. one the device has drifted from. And a LUT is judged against end-to-end
measurements that are themselves noisy: on a shared host their repeatability moves from hour to
hour (docs/bench/latency.md, "LiteRT at 224 with three passes per layer"), so `lut validate
--repeat K` measures K of its networks a second time and reports how far the measurements repeat
(`repeatability`): the floor below which no LUT's error can be judged in that hour.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgenas.latency.errors import LatencyError
from edgenas.latency.lut import accuracy_report

# Drift: the errors of a validation differ from the build's held-out errors by at least this much
# on average, and a two-sample t-test (Welch) says the shift is not chance at this level.
DRIFT_SHIFT = 0.02
DRIFT_P = 0.01
BASELINE_ABOVE, BASELINE_BELOW = 0.03, 0.20  # see baseline_check


@dataclass(frozen=True)
class CheckPlan:
    """When a build's held-out check is satisfied, and how much it may measure to get there."""

    target: float = 0.99  # share of held-out networks within +-tolerance
    tolerance: float = 0.10
    held_out: int = 20  # held-out networks of the first round
    step: int = 8  # networks added to the calibration and to the held-out set per further round
    budget_s: float = 900.0  # wall-clock seconds for the check's rounds, measuring included
    max_rounds: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.target <= 1.0:
            raise LatencyError(f"the held-out target is a share in (0, 1], got {self.target}")
        if self.held_out < 2 or self.step < 1 or self.budget_s < 0 or self.tolerance < 0 or self.max_rounds < 1:
            raise LatencyError("the held-out check needs at least 2 networks, a step of at least 1, "
                               f"a budget >= 0 s, a tolerance >= 0 and a round (got {self.held_out}, {self.step}, "
                               f"{self.budget_s}, {self.tolerance}, {self.max_rounds})")


def held_out_sample(estimator: Any, n: int, exclude: set[str]) -> list[str]:
    """`n` distinct random architectures from a stream of their own, none of `exclude`."""
    return distinct_sample(estimator.space, random.Random(f"held-out-{estimator.seed}"), n, exclude)


def distinct_sample(space: Any, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
    """Up to `n` distinct architectures of `space` drawn with `rng`, none of `exclude` (fewer only
    when the space runs out: 100 * n draws at most)."""
    archs: list[str] = []
    for _ in range(100 * n):
        if len(archs) == n:
            break
        arch = space.sample(rng)
        if arch not in exclude and arch not in archs:
            archs.append(arch)
    return archs


def judge(measured: Sequence[float], predicted: Sequence[float], tolerance: float = 0.10) -> dict[str, Any]:
    """`accuracy_report` plus the signed errors (for drift) and the share within `tolerance`."""
    report = accuracy_report(measured, predicted)
    errors = np.asarray(predicted, dtype=float) / np.asarray(measured, dtype=float) - 1
    report.update(mean_error_pct=float(100 * errors.mean()), sd_error_pct=float(100 * errors.std()),
                  within_tolerance=float(np.mean(np.abs(errors) <= tolerance)), tolerance=tolerance,
                  errors=errors.tolist())
    return report


def build_checked(estimator: Any, plan: CheckPlan, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Calibrate, judge on held-out networks, and repeat with more networks until `plan` is met
    or its budget (time, rounds) is spent; store the last round's held-out report with the correction and return it.

    A round measures its calibration networks and held-out networks end to end (through the
    cache: a killed build measures nothing twice) and times their missing layers dealt, as any
    network's are. The budget is checked before a round starts, against the last round's cost.
    """
    def say(line: str) -> None:
        if progress:
            progress(line)

    started = time.monotonic()
    calibration = estimator.calibration_archs
    held_out = plan.held_out
    rounds = 0
    while True:
        round_started = time.monotonic()
        rounds += 1
        # Each phase is announced: on a backend whose conversion is slow a round takes many minutes.
        say(f"round {rounds}: fitting on {calibration} calibration networks (their missing layers timed, "
            "each network measured end to end)")
        estimator.calibrate(calibration)
        lut = estimator.lut
        archs = held_out_sample(estimator, held_out, set(lut.correction["archs"]))
        say(f"round {rounds}: judging on {held_out} held-out networks ({time.monotonic() - started:.0f} s)")
        lut.fill_dealt(archs)
        estimator.convert_ahead(archs)
        measured = [estimator.measure(arch).latency_ms for arch in archs]
        predicted = [lut.predict(arch) for arch in archs]
        report = judge(measured, predicted, plan.tolerance)
        reached = report["within_tolerance"] >= plan.target
        last_round_s = time.monotonic() - round_started
        spent = time.monotonic() - started
        say(f"round {rounds}: {calibration} calibration networks, {100 * report['within_tolerance']:.0f} % "
            f"of {held_out} held-out within +-{100 * plan.tolerance:.0f} % ({spent:.0f} s)")
        if reached or spent + last_round_s > plan.budget_s or rounds == plan.max_rounds:
            break
        calibration += plan.step
        held_out += plan.step
    every = [estimator.measure(arch) for arch in [*lut.correction["archs"], *archs]]  # from the cache
    stored = estimator.cache.get_baseline(every[-1].reference, estimator.measurer.where) if every[-1].reference else None
    report.update(baseline=baseline_check(every, stored), archs=archs, measured_ms=measured,
                  predicted_ms=predicted, target=plan.target, reached=reached, rounds=rounds, seconds=time.monotonic() - started, calibration_archs=calibration,
                  ended="target reached" if reached else "budget spent")
    lut.store_held_out(report)
    return report


def baseline_check(measurements: Sequence[Any], baseline_ms: float | None) -> dict[str, Any] | None:
    """Whether the reference's baseline was taken in an untypical phase of the machine.

    Every calibrated figure is a ratio times the baseline, the reference's median timed alone when
    the cache was new (`Measurer.baseline`); taken in a slow (or unusually fast) minute, it scales
    every figure of the cache alike (docs/bench/latency.md, issue 17: builds from empty caches an
    hour apart differed in milliseconds, not in ratios). The reference also runs inside every
    measurement, interleaved with the candidate, where it runs slower than alone, by how much
    depending on the network's size and the protocol (the bounds come from builds at 32 and 224 px,
    docs/bench/latency.md). So the baseline is suspect when it lies more
    than BASELINE_ABOVE above, or BASELINE_BELOW below, the 10th percentile of those medians. None
    where fewer than 10 measurements were calibrated with `baseline_ms` (the one stored now).
    """
    medians = [m.reference_median_ms for m in measurements
               if m.reference_median_ms and baseline_ms and m.reference_baseline_ms == baseline_ms]
    if len(medians) < 10:
        return None
    baseline = float(baseline_ms)
    fast = float(np.percentile(medians, 10))
    off = baseline / fast - 1
    return {"baseline_ms": baseline, "reference_p10_ms": fast, "n": len(medians), "off_pct": 100 * off,
            "suspect": bool(off > BASELINE_ABOVE or off < -BASELINE_BELOW)}


def repeatability(first: Sequence[float], second: Sequence[float], tolerance: float = 0.10) -> dict[str, Any]:
    """How far a second end-to-end measurement of the same networks lies from the first: the mean
    and spread of second / first - 1 (%), and the shares within +-5 % and +-`tolerance`."""
    if len(first) != len(second) or not first:
        raise LatencyError(f"repeatability needs pairs of measurements, got {len(first)} and {len(second)}")
    change = np.asarray(second, dtype=float) / np.asarray(first, dtype=float) - 1
    return {"n": len(change), "mean_change_pct": float(100 * change.mean()), "sd_change_pct": float(100 * change.std()),
            "within_5pct": float(np.mean(np.abs(change) <= 0.05)),
            "within_tolerance": float(np.mean(np.abs(change) <= tolerance)), "tolerance": tolerance,
            "first_ms": list(map(float, first)), "second_ms": list(map(float, second))}


def drift(validation: dict[str, Any], held_out: dict[str, Any] | None) -> dict[str, Any] | None:
    """Whether a validation's errors have moved from the build's held-out errors (None: no
    held-out report stored, e.g. a LUT built by an earlier version)."""
    if not held_out or len(held_out.get("errors", ())) < 2 or len(validation["errors"]) < 2:
        return None
    # Imported here, not at the top: scipy.stats is slow to import and few commands need it.
    from scipy.stats import ttest_ind

    shift = float(np.mean(validation["errors"]) - np.mean(held_out["errors"]))
    p = float(ttest_ind(validation["errors"], held_out["errors"], equal_var=False).pvalue)
    return {"shift_pct": 100 * shift, "p": p, "drifted": bool(p < DRIFT_P and abs(shift) >= DRIFT_SHIFT),
            "built_within_tolerance": held_out.get("within_tolerance"), "built_n": held_out.get("n")}
