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
