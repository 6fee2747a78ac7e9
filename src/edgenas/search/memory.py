"""`MemoryLog`: the store's bookkeeping without a file, for benchmarks that run thousands of searches.

It keeps the `TrialLog` contract of `edgenas.search.store.Store` (the same contract test runs over
both), so a search on it behaves exactly as on a run directory, minus surviving a kill.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from edgenas.evaluators.base import TrialResult
from edgenas.search.trials import Checkpoint, TrialRecord


class MemoryLog:
    """Trials and the latest strategy checkpoint in a dict (a checkpoint is copied when given)."""

    def __init__(self) -> None:
        self.records: dict[int, TrialRecord] = {}
        self._checkpoint: Any | None = None
        self._status: tuple[str, str | None] = ("running", None)

    def _save(self, checkpoint: Checkpoint) -> None:
        if checkpoint is not None:
            self._checkpoint = copy.deepcopy(checkpoint())

    def begin_trial(self, arch: str, seed: int | None, checkpoint: Checkpoint = None) -> int:
        if any(r.arch == arch for r in self.records.values()):
            raise ValueError(f"architecture {arch!r} is already a trial of this run")
        trial_id = len(self.records) + 1
        self.records[trial_id] = TrialRecord(trial_id, arch, "running", seed=seed, started=time.time())
        self._save(checkpoint)
        return trial_id

    def restart_trial(self, trial_id: int) -> None:
        record = self.records[trial_id]
        if record.status == "running":
            record.started = time.time()

    def finish_trial(self, trial_id: int, result: TrialResult, reward: float | None, seconds: float,
                     checkpoint: Checkpoint = None) -> None:
        record = self.records.get(trial_id)
        if record is None or record.status != "running":
            raise RuntimeError(f"trial {trial_id} is not running; refusing to record it twice")
        record.status = "ok" if result.ok else "failed"
        record.accuracy, record.latency_ms, record.reward = result.accuracy, result.latency_ms, reward
        record.metrics, record.error = dict(result.metrics), result.error
        record.finished, record.seconds = time.time(), seconds
        self._save(checkpoint)

    def trials(self, status: str | None = None) -> list[TrialRecord]:
        return [r for _, r in sorted(self.records.items()) if status is None or r.status == status]

    def load_checkpoint(self) -> Any | None:
        return copy.deepcopy(self._checkpoint)

    def set_status(self, status: str, note: str | None = None) -> None:
        self._status = (status, note)

    def status(self) -> tuple[str, str | None]:
        return self._status
