"""Read the output of TFLite's `benchmark_model` tool (what an Android phone prints over adb).

The tool prints, among log lines that may carry prefixes such as `INFO: ` or `I tflite  : `:

    count=50 first=9876 curr=7612 min=7420 max=8301 avg=7654.3 std=180 p5=7433 median=7611 p95=8012
    Inference timings in us: Init: 12345, First inference: 9876, Warmup (avg): 8000, Inference (avg): 7654.32

The last `count=` line with `first=` is the timed run (the earlier one is the warm-up); recent
versions add `p5`, `median` and `p95` to it. Numbers may be written like `2.95034e+06`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgenas.latency.errors import LatencyError

_NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
_SUMMARY = re.compile(
    rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
    rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}"
)
_FIELD = re.compile(rf"\b(count|first|curr|min|max|avg|std|p5|median|p95)={_NUMBER}")


@dataclass(frozen=True)
class BenchmarkModelResult:
    """Timings of one `benchmark_model` run, in microseconds."""

    init_us: float
    first_us: float
    warmup_avg_us: float
    avg_us: float
    count: int | None = None
    min_us: float | None = None
    max_us: float | None = None
    std_us: float | None = None
    median_us: float | None = None
    p5_us: float | None = None
    p95_us: float | None = None

    @property
    def typical_ms(self) -> float:
        """The median when the tool printed one, else the average."""
        return (self.median_us if self.median_us is not None else self.avg_us) / 1000.0


def parse_benchmark_output(text: str) -> BenchmarkModelResult:
    """Parse `benchmark_model` output; a LatencyError quotes the tool's last line if it failed."""
    summary = _SUMMARY.search(text)
    if summary is None:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "fail" in line.lower()]
        said = (errors or lines or ["no output"])[-1]
        raise LatencyError(f"benchmark_model printed no timings (it said: {said[:200]}); "
                           "check the model file and the benchmark_model binary on the device")
    init_us, first_us, warmup_us, avg_us = (float(g) for g in summary.groups())
    timed: dict[str, float] = {}
    for line in text[: summary.start()].splitlines():
        fields = dict((k, float(v)) for k, v in _FIELD.findall(line))
        if "count" in fields and "first" in fields:
            timed = fields  # the last such line before the summary is the timed run
    return BenchmarkModelResult(
        init_us=init_us,
        first_us=first_us,
        warmup_avg_us=warmup_us,
        avg_us=avg_us,
        count=int(timed["count"]) if "count" in timed else None,
        min_us=timed.get("min"),
        max_us=timed.get("max"),
        std_us=timed.get("std"),
        median_us=timed.get("median"),
        p5_us=timed.get("p5"),
        p95_us=timed.get("p95"),
    )
