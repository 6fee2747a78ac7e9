"""What one latency measurement reports, and the statistics behind it.

Why a ratio beside the absolute figure: the machine that measures is shared, and its speed drifts
(absolute medians moved by up to 45 % over minutes here) while the ratio of a candidate to a fixed
reference model timed in alternation moved 0.3 %. So every measurement carries the raw median, the
ratio to the interleaved reference, and a calibrated figure: ratio x the reference's latency on a
quiet machine (its baseline). Searches rank by `latency_ms`, which is the calibrated figure when
there is one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np


@dataclass
class Measurement:
    """One latency figure with its spread and where and how it was obtained (times in ms)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    backend: str
    device: str
    runtime: str = ""
    where: str = ""
    what: str = ""
    input_shape: tuple[int, ...] = ()
    threads: int = 1
    warmup: int = 0
    source: str = "measured"  # "measured", "cache" or "lut"
    reference: str | None = None
    reference_median_ms: float | None = None
    reference_ratio: float | None = None
    ratio_p10: float | None = None
    ratio_p90: float | None = None
    reference_baseline_ms: float | None = None
    calibrated_ms: float | None = None
    attempts: int = 1
    noisy: bool = False
    clock: str = "wall"  # "cpu": process CPU time per run (one thread, pinned); "wall": elapsed time
    wall_median_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        """The figure a search should use: calibrated when an interleaved reference was timed."""
        return self.calibrated_ms if self.calibrated_ms is not None else self.median_ms

    @property
    def spread(self) -> float:
        """Relative width (p90 - p10) / median of what `latency_ms` is derived from."""
        if self.reference_ratio is not None and self.ratio_p10 is not None and self.ratio_p90 is not None:
            return (self.ratio_p90 - self.ratio_p10) / self.reference_ratio
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["latency_ms"] = self.latency_ms
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["input_shape"] = tuple(values.get("input_shape", ()))
        return cls(**values)


@dataclass(frozen=True)
class Summary:
    """Median and 10th/90th percentiles of a list of timings."""

    median: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no timings to summarise")
        array = np.asarray(values, dtype=float)
        p10, median, p90 = np.percentile(array, [10, 50, 90])
        return cls(float(median), float(p10), float(p90), len(array))


def summarize_interleaved(candidate_ms: Sequence[float], reference_ms: Sequence[float]) -> tuple[Summary, Summary, Summary]:
    """Summaries of the candidate, the reference, and the ratio candidate/reference.

    The ratio's centre is the ratio of the two medians, both taken over the same interleaved
    stretch of time, so a slowdown that hits both (another job on the machine) cancels; its p10
    and p90 are those of the per-pair ratios, to show how much single pairs scatter. (The median
    of per-pair ratios was tried and repeated 2-3x worse across processes here: each pair adds
    two runs' noise.)
    """
    pairs = min(len(candidate_ms), len(reference_ms))
    ratios = [c / r for c, r in zip(candidate_ms[:pairs], reference_ms[:pairs]) if r > 0]
    candidate, reference = Summary.of(candidate_ms), Summary.of(reference_ms)
    per_pair = Summary.of(ratios)
    centre = candidate.median / reference.median
    return candidate, reference, Summary(centre, per_pair.p10, per_pair.p90, per_pair.n)


def split_half_disagreement(candidate_ms: Sequence[float], reference_ms: Sequence[float] | None = None) -> float:
    """How much the first and second half of the runs disagree, relative: |a - b| / mean(a, b).

    This is what decides a re-measurement: if the reported figure (ratio to the reference, or the
    median when there is none) moved by more than a few percent within one measurement, it is not
    yet a figure worth keeping.
    """
    half = len(candidate_ms) // 2
    if half < 2:
        return 0.0

    def figure(lo: int, hi: int) -> float:
        value = float(np.median(candidate_ms[lo:hi]))
        if reference_ms:
            value /= float(np.median(reference_ms[lo:hi]))
        return value

    first, second = figure(0, half), figure(half, 2 * half)
    return abs(first - second) / ((first + second) / 2)
