"""The interface every latency backend keeps, and the local-subprocess implementation.

A backend knows how to turn a network into the file its runtime loads (`prepare`), how to time a
list of such files with an optional interleaved reference (`run`), and who it is (`device`,
`runtime`, for the cache key). `status()` says whether it can be used here and, if not, why and
what to do; `require()` turns that into a LatencyError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from edgenas.latency.device import local_device, quietest_core
from edgenas.latency.errors import LatencyError

# glibc returns freed memory to the OS and mmaps big blocks afresh by default, so eager timings
# jumped between processes (15 ms vs 22-30 ms for one model). High thresholds keep the heap warm.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can measure here; if not, why, and the command that fixes it."""

    name: str
    usable: bool
    reason: str = ""
    fix: str = ""
    device: str = ""
    runtime: str = ""
    description: str = ""


@dataclass(frozen=True)
class TimingItem:
    """One model file to time, with the input shape it takes (batch 1)."""

    path: Path
    input_shape: tuple[int, ...]


@dataclass
class TimingJob:
    """What to time and how: files, optional interleaved reference, warm-up and timed runs."""

    items: Sequence[TimingItem]
    reference: TimingItem | None = None
    warmup: int = 10
    runs: int = 50
    threads: int = 1
    core: int | None = None  # None: the quietest core at the start (local backends)
    max_seconds: float = 60.0
    chain: bool = False  # time the items together in passes (see timing.time_chain), not one by one
    min_seconds: float = 0.0  # one by one: add pairs past `runs` until they took this long (time_pairs)


@dataclass
class RawTiming:
    """The per-run timings of one item (and of the reference runs interleaved with it)."""

    index: int
    candidate_ms: list[float] = field(default_factory=list)
    reference_ms: list[float] = field(default_factory=list)
    where: str = ""
    candidate_cpu_ms: list[float] = field(default_factory=list)
    reference_cpu_ms: list[float] = field(default_factory=list)
    error: str | None = None


class Backend(ABC):
    """One way of running a model and timing it."""

    name: str = "backend"
    suffix: str = ".onnx"
    description: str = ""
    times_in_passes: bool = True  # honours TimingJob.chain; else every item is timed alone
    # Its conversion costs seconds a model (litert-torch: ~2 s a layer), so a LUT build converts
    # in several processes at once (`Measurer.prepare_many`); ONNX and torch files take a fraction.
    slow_to_prepare: bool = False

    @abstractmethod
    def status(self) -> BackendStatus:
        """Can this backend measure here? Cheap; never raises."""

    def require(self) -> BackendStatus:
        status = self.status()
        if not status.usable:
            raise LatencyError(f"backend '{self.name}' is not usable: {status.reason}; {status.fix}")
        return status

    def device(self) -> str:
        return self.require().device

    def runtime(self) -> str:
        return self.require().runtime

    @abstractmethod
    def prepare(self, model: nn.Module, input_shape: Sequence[int], path: Path) -> Path:
        """Write the file this backend's runtime loads; raise ExportError if the model is rejected."""

    @abstractmethod
    def run(self, job: TimingJob) -> Iterator[RawTiming]:
        """Time each item of the job, yielding results in order as they finish."""


class LocalBackend(Backend):
    """A runtime on this machine, timed in a fresh subprocess pinned to one core."""

    runner: str = ""

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def run(self, job: TimingJob) -> Iterator[RawTiming]:
        self.require()
        core = job.core if job.core is not None else quietest_core()
        payload = {
            "runtime": self.runner,
            "threads": job.threads,
            "core": core,
            "warmup": job.warmup,
            "runs": job.runs,
            "max_seconds": job.max_seconds,
            "min_seconds": job.min_seconds,
            "chain": job.chain,
            "items": [{"path": str(i.path), "input_shape": list(i.input_shape)} for i in job.items],
            "reference": (
                {"path": str(job.reference.path), "input_shape": list(job.reference.input_shape)}
                if job.reference is not None else None
            ),
        }
        env = dict(os.environ, **MALLOC_ENV)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(job.threads)
        # stderr goes to a file: a chatty runtime must not fill a pipe nobody reads until the end.
        errors = tempfile.TemporaryFile(mode="w+")
        process = subprocess.Popen(
            [self.python, "-m", "edgenas.latency.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True, env=env,
        )
        assert process.stdin is not None and process.stdout is not None
        seen = 0
        try:
            try:
                process.stdin.write(json.dumps(payload))
                process.stdin.close()
            except BrokenPipeError:  # it died before reading the job; reported below
                pass
            for line in process.stdout:
                record = json.loads(line)
                seen += 1
                yield RawTiming(
                    index=record["index"],
                    candidate_ms=record.get("candidate_ms", []),
                    reference_ms=record.get("reference_ms", []),
                    where=f"{self.name} {record.get('where', '')}".strip(),
                    candidate_cpu_ms=record.get("candidate_cpu_ms", []),
                    reference_cpu_ms=record.get("reference_cpu_ms", []),
                    error=record.get("error"),
                )
        finally:
            if process.poll() is None and seen < len(job.items):
                process.kill()
            process.wait()
            errors.seek(0)
            stderr = errors.read()
            errors.close()
        if seen < len(job.items):
            tail = " ".join(stderr.strip().splitlines()[-1:]) or f"exit status {process.returncode}"
            raise LatencyError(f"the measuring subprocess of backend '{self.name}' died: {tail[:300]}")

    def _local_status(self, runtime: str) -> BackendStatus:
        return BackendStatus(self.name, True, device=local_device(), runtime=runtime,
                             description=self.description)
