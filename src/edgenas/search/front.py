"""The final Pareto front measured end to end, beside the latency the search ranked it by.

Why: a search that takes latency from the per-layer LUT ranks by a prediction whose error is the
LUT's (docs/latency.md). What a user ships is decided on the front, so every network on it is
measured end to end on the same device and settings, and `front.json` (and the report) show the
prediction, the measurement and the error side by side. Measurements go through the latency cache,
so measuring the front again after a kill or a resumed search costs only what is new.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgenas.errors import UserError
from edgenas.search.store import Store
from edgenas.util.atomic import write_atomic

FRONT = "front.json"


def measure_front(run_dir: str | Path, make_estimator: Callable[[], Any]) -> list[dict[str, Any]]:
    """Measure the run's Pareto front (fastest first by the search's latency) end to end with an
    estimator in measure mode; write the rows to `run_dir/front.json` and return them."""
    with Store.open_existing(run_dir) as store:
        front = store.pareto()
        counts = store.counts()
    if not front:
        raise UserError(f"the run in {run_dir} has no completed trial to measure; see edgenas runs show {run_dir}")
    estimator = make_estimator()
    try:
        rows = []
        for trial in front:
            measured = estimator.measure(trial.arch).latency_ms
            rows.append({"arch": trial.arch, "accuracy": trial.accuracy, "predicted_ms": trial.latency_ms,
                         "measured_ms": float(measured), "error": trial.latency_ms / measured - 1,
                         "params": trial.metrics.get("params"), "trials": counts["ok"]})
    finally:
        estimator.close()
    write_atomic(Path(run_dir) / FRONT, json.dumps(rows, indent=2) + "\n")
    return rows


def front_estimator(space: Any, latency: Any) -> Callable[[], Any] | None:
    """Where `latency` (LatencySettings) predicts from the LUT: a factory of an estimator that
    measures end to end on the same backend, device and protocol; else None (measured already)."""
    if latency.mode != "lut":
        return None
    from edgenas.latency.estimator import make_latency_estimator

    return functools.partial(make_latency_estimator, space, dataclasses.replace(latency, mode="measure"))


def read_front(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The front as `measure_front` wrote it, or None where it was not written (a search whose
    latency was measured end to end already)."""
    path = Path(run_dir) / FRONT
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is unreadable ({error}); delete it and measure the front again") from None
