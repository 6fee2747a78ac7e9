"""The run store: one SQLite file per search run, `RUN_DIR/store.sqlite`, in WAL mode.

Why SQLite: every state change of a search is one small transaction, so a search killed at any
moment (even `kill -9`) leaves a consistent file behind, and the same command resumes from it.
A trial is written as `running` together with the strategy's checkpoint taken right after it
was proposed, and rewritten as `ok`/`failed` together with the checkpoint taken right after the
strategy learned from it. So the checkpoint always matches the trials: none is lost, none is
counted twice, and a trial that was in flight when the process died is simply run again.

Tables: `meta` (format marker), `experiments` (the run's config as JSON), `trials` (arch,
status, accuracy, latency_ms, reward, metrics JSON, error, seed, timings), `checkpoints` (the
latest strategy state, serialised with `torch.save` and read back with `weights_only=True`).
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from edgenas.errors import UserError
from edgenas.evaluators.base import TrialResult
from edgenas.search.trials import TrialRecord, best_trial, pareto_trials
from edgenas.util.lock import WriterLock

STORE_NAME = "store.sqlite"
FORMAT = "edgenas-store"
VERSION = "1"
STATUSES = ("running", "ok", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running',
    note TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    arch TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed')),
    accuracy REAL,
    latency_ms REAL,
    reward REAL,
    metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    seed INTEGER,
    started REAL NOT NULL,
    finished REAL,
    seconds REAL,
    UNIQUE (experiment_id, arch)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    experiment_id INTEGER PRIMARY KEY REFERENCES experiments(id),
    trials_finished INTEGER NOT NULL,
    state BLOB NOT NULL,
    saved REAL NOT NULL
);
"""
_TABLES = {"meta", "experiments", "trials", "checkpoints"}


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as dotted keys, so a difference can be named precisely."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ (or exist on one side only), ignoring `ignore` prefixes."""
    a, b = flatten(stored), flatten(json.loads(json.dumps(wanted)))
    keys = sorted(set(a) | set(b))
    return [k for k in keys if not k.startswith(ignore) and a.get(k, "<absent>") != b.get(k, "<absent>")]


def _row(row: sqlite3.Row) -> TrialRecord:
    return TrialRecord(
        id=row["id"], arch=row["arch"], status=row["status"], accuracy=row["accuracy"],
        latency_ms=row["latency_ms"], reward=row["reward"], metrics=json.loads(row["metrics"] or "{}"),
        error=row["error"], seed=row["seed"], started=row["started"], finished=row["finished"],
        seconds=row["seconds"],
    )


def _serialize(state: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


class Store:
    """One run's trials and the strategy's latest checkpoint. Open with `Store.create_or_resume`
    (a search) or `Store.open_existing` (a report, read-only)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, experiment_id: int, config: dict[str, Any]):
        self.path = path
        self._db = connection
        self.experiment_id = experiment_id
        self.config = config
        self._lock: WriterLock | None = None  # held by a writer (create_or_resume), not by readers

    # ---- opening -------------------------------------------------------------------------
    @staticmethod
    def path_for(run_dir: str | Path) -> Path:
        return Path(run_dir) / STORE_NAME

    @classmethod
    def _inspect(cls, path: Path) -> dict[str, Any] | None:
        """The stored config, or None for a store that was never initialised. Reads only."""
        bad = f"{path} is not a readable edgenas store"
        fix = "choose a new --out directory (or move the file away)"
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not tables:
                    return None
                if not _TABLES <= tables:
                    raise UserError(f"{bad} (tables {sorted(tables)}); {fix}")
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("format") != FORMAT:
                    raise UserError(f"{bad} (no edgenas format marker); {fix}")
                if meta.get("version") != VERSION:
                    raise UserError(f"{path} has store version {meta.get('version')}, this edgenas reads {VERSION}; {fix}")
                check = db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise UserError(f"{bad} (integrity check: {check}); {fix}")
                row = db.execute("SELECT config FROM experiments ORDER BY id LIMIT 1").fetchone()
                return None if row is None else json.loads(row[0])
            finally:
                db.close()
        except sqlite3.Error as error:
            raise UserError(f"{bad} ({error}); {fix}") from None
        except (json.JSONDecodeError, TypeError) as error:
            raise UserError(f"{bad} (config unreadable: {error}); {fix}") from None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives the process being killed.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @classmethod
    def create_or_resume(
        cls, run_dir: str | Path, config: dict[str, Any], mutable: tuple[str, ...] = ()
    ) -> Store:
        """Start a run in `run_dir`, or reopen it when its stored config matches `config`.

        Keys under `mutable` (e.g. the budget) may change between runs; the new values are kept.
        Everything is checked before anything is written: a mismatch or a corrupt file raises
        UserError and leaves the store as it was.
        """
        run_dir = Path(run_dir)
        path = cls.path_for(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"--out {run_dir} is a file; give a directory for the run")
        cls._check_config(path, config, mutable)  # before anything is written, the lock file included
        lock = WriterLock.for_directory(run_dir, "search").acquire()
        try:
            cls._check_config(path, config, mutable)  # again under the lock: another writer may have just started it
            db = cls._connect(path)
        except (OSError, sqlite3.Error) as error:
            lock.release()
            raise UserError(f"cannot create the store {path} ({error}); choose a writable --out") from None
        except BaseException:
            lock.release()
            raise
        now = time.time()
        text = json.dumps(config, sort_keys=True)
        try:
            with _transaction(db, path):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?), ('version', ?)", (FORMAT, VERSION))
                row = db.execute("SELECT id FROM experiments ORDER BY id LIMIT 1").fetchone()
                if row is None:
                    experiment_id = db.execute(
                        "INSERT INTO experiments (config, created, updated) VALUES (?, ?, ?)", (text, now, now)
                    ).lastrowid
                else:
                    experiment_id = row[0]
                    db.execute("UPDATE experiments SET config = ?, updated = ? WHERE id = ?",
                               (text, now, experiment_id))
        except BaseException:
            db.close()
            lock.release()
            raise
        store = cls(path, db, int(experiment_id), json.loads(text))
        store._lock = lock
        return store

    @classmethod
    def stored_config(cls, run_dir: str | Path) -> dict[str, Any] | None:
        """The config of the run in `run_dir`, or None where none was started. Reads only; a
        corrupt store is a UserError, as when it is opened."""
        path = cls.path_for(run_dir)
        return cls._inspect(path) if path.exists() else None

    @classmethod
    def _check_config(cls, path: Path, config: dict[str, Any], mutable: tuple[str, ...]) -> None:
        """Refuse a store that holds a run with another configuration (the differing keys named)."""
        stored = cls.stored_config(path.parent)
        if stored is None:
            return
        differing = config_differences(stored, config, ignore=mutable)
        if differing:
            shown = ", ".join(
                f"{k} (stored {flatten(stored).get(k, '<absent>')!r}, now {flatten(config).get(k, '<absent>')!r})"
                for k in differing
            )
            raise UserError(
                f"{path} holds a run with a different configuration: {shown}; rerun with the "
                "stored settings to resume, or choose a new --out"
            )

    @classmethod
    def open_existing(cls, run_dir: str | Path) -> Store:
        """Open a run for reading (the report). A missing or corrupt store is a UserError."""
        path = cls.path_for(run_dir)
        if not path.is_file():
            raise UserError(f"no search run at {run_dir} (no {STORE_NAME}); run 'edgenas search --out {run_dir}' first")
        config = cls._inspect(path)
        if config is None:
            raise UserError(f"{path} holds no experiment yet; run 'edgenas search --out {run_dir}' first")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        experiment_id = db.execute("SELECT id FROM experiments ORDER BY id LIMIT 1").fetchone()[0]
        return cls(path, db, int(experiment_id), config)

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing (each call is one transaction) -------------------------------------------
    def _save_checkpoint(self, checkpoint: Callable[[], Any] | None, now: float) -> None:
        if checkpoint is None:
            return
        finished = self._db.execute(
            "SELECT COUNT(*) FROM trials WHERE experiment_id = ? AND status != 'running'", (self.experiment_id,)
        ).fetchone()[0]
        self._db.execute(
            "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
            (self.experiment_id, finished, _serialize(checkpoint()), now),
        )

    def begin_trial(self, arch: str, seed: int | None, checkpoint: Callable[[], Any] | None = None) -> int:
        """Record a proposed architecture as running, with the strategy state that proposed it."""
        now = time.time()
        with _transaction(self._db, self.path):
            try:
                trial_id = self._db.execute(
                    "INSERT INTO trials (experiment_id, arch, status, seed, started) VALUES (?, ?, 'running', ?, ?)",
                    (self.experiment_id, arch, seed, now),
                ).lastrowid
            except sqlite3.IntegrityError:
                raise ValueError(f"architecture {arch!r} is already a trial of this run") from None
            self._save_checkpoint(checkpoint, now)
        return int(trial_id)

    def restart_trial(self, trial_id: int) -> None:
        """A trial that was in flight when the last process died is run again from the start."""
        with _transaction(self._db, self.path):
            self._db.execute("UPDATE trials SET started = ? WHERE id = ? AND status = 'running'", (time.time(), trial_id))

    def finish_trial(
        self,
        trial_id: int,
        result: TrialResult,
        reward: float | None,
        seconds: float,
        checkpoint: Callable[[], Any] | None = None,
    ) -> None:
        """Record the outcome together with the strategy state after it learned from it."""
        now = time.time()
        status = "ok" if result.ok else "failed"
        with _transaction(self._db, self.path):
            updated = self._db.execute(
                "UPDATE trials SET status = ?, accuracy = ?, latency_ms = ?, reward = ?, metrics = ?, "
                "error = ?, finished = ?, seconds = ? WHERE id = ? AND status = 'running'",
                (
                    status, result.accuracy, result.latency_ms, reward,
                    json.dumps(result.metrics, default=str), result.error, now, seconds, trial_id,
                ),
            ).rowcount
            if updated != 1:
                raise RuntimeError(f"trial {trial_id} is not running; refusing to record it twice")
            self._save_checkpoint(checkpoint, now)

    def set_status(self, status: str, note: str | None = None) -> None:
        with _transaction(self._db, self.path):
            self._db.execute(
                "UPDATE experiments SET status = ?, note = ?, updated = ? WHERE id = ?",
                (status, note, time.time(), self.experiment_id),
            )

    # ---- reading --------------------------------------------------------------------------
    def load_checkpoint(self) -> Any | None:
        row = self._db.execute(
            "SELECT state FROM checkpoints WHERE experiment_id = ?", (self.experiment_id,)
        ).fetchone()
        if row is None:
            return None
        try:
            return torch.load(io.BytesIO(row[0]), weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling problem means a damaged file
            raise UserError(f"{self.path}: the strategy checkpoint is unreadable ({error}); choose a new --out") from None

    def trials(self, status: str | None = None) -> list[TrialRecord]:
        query = "SELECT * FROM trials WHERE experiment_id = ?"
        params: tuple[Any, ...] = (self.experiment_id,)
        if status is not None:
            query += " AND status = ?"
            params += (status,)
        return [_row(r) for r in self._db.execute(query + " ORDER BY id", params)]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM trials WHERE experiment_id = ? GROUP BY status", (self.experiment_id,)
        ).fetchall()
        found = {status: count for status, count in rows}
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def status(self) -> tuple[str, str | None]:
        row = self._db.execute("SELECT status, note FROM experiments WHERE id = ?", (self.experiment_id,)).fetchone()
        return row[0], row[1]

    def best(self) -> TrialRecord | None:
        """The completed trial with the highest reward (the earliest one on a tie)."""
        return best_trial(self.trials("ok"))

    def pareto(self) -> list[TrialRecord]:
        """Completed trials on the accuracy/latency Pareto front, fastest first."""
        return pareto_trials(self.trials("ok"))


@contextmanager
def _transaction(db: sqlite3.Connection, path: Path | None = None) -> Iterator[None]:
    """One state change, whole or not at all. A write the disk refuses (full, read-only, gone) is
    a UserError: the transaction is rolled back, so the store still opens and resumes once the
    disk is writable again."""
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if db.in_transaction:  # SQLite itself rolls back on some errors (a full disk)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.OperationalError as error:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is closed with the process; SQLite's journal undoes the rest
        where = path or "the run store"
        raise UserError(f"cannot write {where} ({error}); free disk space or make the run directory "
                        "writable, then rerun the same command to resume") from None
