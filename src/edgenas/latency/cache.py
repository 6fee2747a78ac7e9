"""The latency cache: one SQLite file per user, shared by every search on this machine.

Why its own file and not the run store: latency is a property of the device and runtime, not of
one search run, so a candidate measured by yesterday's search is not measured again today. Keys
hold everything the figure depends on: architecture string, resolution, backend, device identity,
runtime version, and a `setting` string (classes, input channels, threads, reference). The LUT's
per-layer entries, the reference baselines and the LUT's end-to-end correction live here too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.latency.errors import LatencyError
from edgenas.latency.measurement import Measurement

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    arch TEXT NOT NULL, resolution INTEGER NOT NULL, backend TEXT NOT NULL, device TEXT NOT NULL,
    runtime TEXT NOT NULL, setting TEXT NOT NULL, latency_ms REAL NOT NULL, data TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (arch, resolution, backend, device, runtime, setting));
CREATE TABLE IF NOT EXISTS baselines (
    reference TEXT NOT NULL, backend TEXT NOT NULL, device TEXT NOT NULL, runtime TEXT NOT NULL,
    setting TEXT NOT NULL, baseline_ms REAL NOT NULL, data TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (reference, backend, device, runtime, setting));
CREATE TABLE IF NOT EXISTS lut (
    layer TEXT NOT NULL, input_shape TEXT NOT NULL, backend TEXT NOT NULL, device TEXT NOT NULL,
    runtime TEXT NOT NULL, setting TEXT NOT NULL, latency_ms REAL NOT NULL, data TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (layer, input_shape, backend, device, runtime, setting));
CREATE TABLE IF NOT EXISTS lut_corrections (
    name TEXT NOT NULL, backend TEXT NOT NULL, device TEXT NOT NULL, runtime TEXT NOT NULL,
    setting TEXT NOT NULL, data TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (name, backend, device, runtime, setting));
"""


def default_cache_path() -> Path:
    """$EDGENAS_CACHE_DIR/latency.sqlite, else ~/.cache/edgenas/latency.sqlite."""
    directory = os.environ.get("EDGENAS_CACHE_DIR")
    base = Path(directory).expanduser() if directory else Path.home() / ".cache" / "edgenas"
    return base / "latency.sqlite"


@dataclass(frozen=True)
class Where:
    """The part of every key that names the measuring side: backend, device, runtime, setting."""

    backend: str
    device: str
    runtime: str
    setting: str

    def values(self) -> tuple[str, str, str, str]:
        return (self.backend, self.device, self.runtime, self.setting)


class LatencyCache:
    """SQLite in WAL mode (several searches may read and write it at once)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise LatencyError(f"cannot open the latency cache {self.path}: {error}; "
                               "pass another path or set EDGENAS_CACHE_DIR") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, values: tuple[Any, ...]) -> None:
        with self._lock, self._db:
            self._db.execute(sql, values)

    def _one(self, sql: str, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(sql, values).fetchone()

    # --- end-to-end measurements ------------------------------------------------------------
    def get(self, arch: str, resolution: int, where: Where) -> Measurement | None:
        row = self._one("SELECT data FROM measurements WHERE arch=? AND resolution=? AND backend=? "
                        "AND device=? AND runtime=? AND setting=?", (arch, resolution, *where.values()))
        return Measurement.from_dict(json.loads(row[0])) if row else None

    def put(self, arch: str, resolution: int, where: Where, measurement: Measurement) -> None:
        self._write("INSERT OR REPLACE INTO measurements VALUES (?,?,?,?,?,?,?,?,?)",
                    (arch, resolution, *where.values(), measurement.latency_ms,
                     measurement.to_json(), time.time()))

    def count(self, table: str = "measurements") -> int:
        if table not in ("measurements", "baselines", "lut", "lut_corrections"):
            raise ValueError(table)
        row = self._one(f"SELECT COUNT(*) FROM {table}", ())
        return int(row[0]) if row else 0

    # --- reference baselines ----------------------------------------------------------------
    def get_baseline(self, reference: str, where: Where) -> float | None:
        row = self._one("SELECT baseline_ms FROM baselines WHERE reference=? AND backend=? AND device=? "
                        "AND runtime=? AND setting=?", (reference, *where.values()))
        return float(row[0]) if row else None

    def put_baseline(self, reference: str, where: Where, baseline_ms: float, data: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO baselines VALUES (?,?,?,?,?,?,?,?)",
                    (reference, *where.values(), baseline_ms, json.dumps(data), time.time()))

    # --- LUT --------------------------------------------------------------------------------
    def get_layers(self, where: Where) -> dict[tuple[str, str], float]:
        """Every stored layer time for this backend/device/runtime/setting, keyed (layer, shape)."""
        with self._lock:
            rows = self._db.execute("SELECT layer, input_shape, latency_ms FROM lut WHERE backend=? AND "
                                    "device=? AND runtime=? AND setting=?", where.values()).fetchall()
        return {(layer, shape): float(ms) for layer, shape, ms in rows}

    def put_layer(self, layer: str, input_shape: str, where: Where, latency_ms: float, data: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO lut VALUES (?,?,?,?,?,?,?,?,?)",
                    (layer, input_shape, *where.values(), latency_ms, json.dumps(data), time.time()))

    def get_correction(self, name: str, where: Where) -> dict[str, Any] | None:
        row = self._one("SELECT data FROM lut_corrections WHERE name=? AND backend=? AND device=? AND "
                        "runtime=? AND setting=?", (name, *where.values()))
        return json.loads(row[0]) if row else None

    def put_correction(self, name: str, where: Where, data: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO lut_corrections VALUES (?,?,?,?,?,?,?)",
                    (name, *where.values(), json.dumps(data), time.time()))

    # --- re-taking a baseline ---------------------------------------------------------------
    def rebase(self, reference: str, where: Where, baseline_ms: float, data: dict[str, Any]) -> dict[str, Any]:
        """Replace a stored baseline and rescale every figure calibrated with it, in one transaction.

        Why this works: a calibrated figure is a ratio to the interleaved reference times the
        baseline (`Measurer.baseline`), and the ratios are what repeats (docs/bench/latency.md,
        issue 17), so a figure made with the old baseline becomes today's by new / old. Rows are
        matched by the reference they were timed against and the exact baseline they carry;
        a LUT correction rescales by what it records it was fitted with (`LatencyLUT.calibrate`):
        a correction from an earlier version records nothing, is left alone and counted.
        Returns the old and new baseline, the factor and the rows rescaled per table.
        """
        if not baseline_ms > 0:
            raise LatencyError(f"a baseline must be a positive time, got {baseline_ms} ms")
        with self._lock, self._db:
            row = self._db.execute("SELECT baseline_ms, data FROM baselines WHERE reference=? AND backend=? AND "
                                   "device=? AND runtime=? AND setting=?", (reference, *where.values())).fetchone()
            if row is None:
                raise LatencyError(f"no baseline of {reference} is stored for {where.backend} on {where.device}; "
                                   "measure something first (it is taken then)")
            old = float(row[0])
            factor = baseline_ms / old
            same = (where.backend, where.device, where.runtime, where.setting + ";%")
            counts = {"measurements": 0, "lut": 0, "lut_corrections": 0, "corrections_left": 0}
            for table in ("measurements", "lut"):
                keys = "arch, resolution" if table == "measurements" else "layer, input_shape"
                rows = self._db.execute(f"SELECT {keys}, setting, data FROM {table} WHERE backend=? AND device=? "
                                        "AND runtime=? AND setting LIKE ?", same).fetchall()
                for first, second, setting, text in rows:
                    figure = json.loads(text)
                    if figure.get("reference") != reference or not _same(figure.get("reference_baseline_ms"), old):
                        continue
                    for name in ("calibrated_ms", "latency_ms"):
                        if figure.get(name) is not None:
                            figure[name] *= factor
                    if "passes_ms" in figure:
                        figure["passes_ms"] = [ms * factor for ms in figure["passes_ms"]]
                    figure["reference_baseline_ms"] = baseline_ms
                    self._db.execute(f"UPDATE {table} SET latency_ms=latency_ms*?, data=? WHERE "
                                     f"{keys.replace(', ', '=? AND ')}=? AND backend=? AND device=? AND runtime=? "
                                     "AND setting=?", (factor, json.dumps(figure), first, second,
                                                       *where.values()[:3], setting))
                    counts[table] += 1
            rows = self._db.execute("SELECT name, setting, data FROM lut_corrections WHERE backend=? AND device=? "
                                    "AND runtime=? AND setting LIKE ?", same).fetchall()
            for name, setting, text in rows:
                correction = json.loads(text)
                fitted_with = correction.get("baselines")
                if not fitted_with:
                    counts["corrections_left"] += 1
                    continue
                on_layers, on_measured = (bool(fitted_with.get(part)) and fitted_with[part][0] == reference
                                          and _same(fitted_with[part][1], old) for part in ("layers", "measured"))
                if not (on_layers or on_measured):
                    continue
                rescale_correction(correction, factor if on_layers else 1.0, factor if on_measured else 1.0)
                for part, applies in (("layers", on_layers), ("measured", on_measured)):
                    if applies:
                        fitted_with[part] = [reference, baseline_ms]
                if on_measured and (correction.get("held_out") or {}).get("baseline"):
                    correction["held_out"]["baseline"]["retaken_ms"] = baseline_ms  # the check judged the old one
                self._db.execute("UPDATE lut_corrections SET data=? WHERE name=? AND backend=? AND device=? AND "
                                 "runtime=? AND setting=?", (json.dumps(correction), name, *where.values()[:3], setting))
                counts["lut_corrections"] += 1
            previous = json.loads(row[1]).get("previous", [])
            stored = {**data, "previous": [*previous, {"baseline_ms": old, "replaced": time.time()}]}
            self._db.execute("UPDATE baselines SET baseline_ms=?, data=?, created=? WHERE reference=? AND backend=? "
                             "AND device=? AND runtime=? AND setting=?",
                             (baseline_ms, json.dumps(stored), time.time(), reference, *where.values()))
        return {"reference": reference, "old_ms": old, "new_ms": baseline_ms, "factor": factor, **counts}


def _same(value: Any, baseline_ms: float) -> bool:
    return value is not None and abs(float(value) - baseline_ms) <= 1e-9 * baseline_ms


def rescale_correction(correction: dict[str, Any], layers: float, measured: float) -> None:
    """A LUT correction after its layer times were multiplied by `layers` and its measured times
    by `measured`: `measured = a * sum + c * n + d * act + b` keeps holding with `a * measured /
    layers` and `c, d, b` times `measured`; its stored inputs and its held-out report follow."""
    correction["a"] *= measured / layers
    for name in ("c_per_layer", "d_per_mvalue", "b", "rmse_ms"):
        if correction.get(name) is not None:
            correction[name] *= measured
    correction["measured_ms"] = [ms * measured for ms in correction.get("measured_ms", [])]
    correction["features"] = [[row[0] * layers, *row[1:]] for row in correction.get("features", [])]
    held_out = correction.get("held_out")
    if held_out:
        for name in ("measured_ms", "predicted_ms"):
            if name in held_out:
                held_out[name] = [ms * measured for ms in held_out[name]]
        if held_out.get("rmse_ms") is not None:
            held_out["rmse_ms"] *= measured
