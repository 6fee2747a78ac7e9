"""An Android phone over adb: convert to `.tflite`, push, run TFLite's `benchmark_model`, parse.

MnasNet measured latency this way (TFLite, one thread on a big core of a Pixel 1). Each item is
timed in `rounds` rounds that alternate the candidate and the reference (B A B A ... at the
granularity of one benchmark_model call each); the per-round typical times are the samples.
The phone must have the `benchmark_model` binary (from TensorFlow's releases) at `benchmark_model`.
benchmark_model times one model per call, so LUT layers are timed alone here, not in passes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch import nn

from edgenas.export import LITERT_INSTALL, export_tflite
from edgenas.latency.backends.base import Backend, BackendStatus, RawTiming, TimingItem, TimingJob
from edgenas.latency.backends.benchmark_output import parse_benchmark_output
from edgenas.latency.backends.local import _version
from edgenas.latency.errors import LatencyError

DEFAULT_BENCHMARK_MODEL = "/data/local/tmp/benchmark_model"
DEFAULT_REMOTE_DIR = "/data/local/tmp/edgenas"


class AdbBackend(Backend):
    name = "adb"
    suffix = ".tflite"
    description = "Android phone over adb: TFLite benchmark_model, 1 thread, taskset core mask"
    times_in_passes = False

    def __init__(
        self,
        serial: str | None = None,
        core_mask: str = "f0",
        benchmark_model: str = DEFAULT_BENCHMARK_MODEL,
        remote_dir: str = DEFAULT_REMOTE_DIR,
        rounds: int = 3,
        adb: str = "adb",
        timeout: float = 600.0,
    ) -> None:
        self.serial = serial
        self.core_mask = core_mask
        self.benchmark_model = benchmark_model
        self.remote_dir = remote_dir.rstrip("/")
        self.rounds = max(1, rounds)
        self.adb = adb
        self.timeout = timeout
        self._status: BackendStatus | None = None

    # --- transport -------------------------------------------------------------------------
    def _adb(self, *args: str, serial: bool = True) -> subprocess.CompletedProcess:
        command = [self.adb] + (["-s", self.serial] if serial and self.serial else []) + list(args)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise LatencyError(f"'{' '.join(command[:4])} ...' did not answer in {self.timeout:.0f} s; "
                               "check the phone's connection (adb devices)") from None

    def _checked(self, *args: str) -> str:
        done = self._adb(*args)
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[-1]
            raise LatencyError(f"adb {args[0]} failed: {said[:200]}; check `adb devices` and the phone")
        return done.stdout

    def devices(self) -> list[str]:
        """Serials of attached devices in the 'device' state (not 'unauthorized' or 'offline')."""
        done = self._adb("devices", serial=False)
        serials = []
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1] == "device" and not line.startswith("List of"):
                serials.append(parts[0])
        return serials

    # --- Backend ---------------------------------------------------------------------------
    def status(self) -> BackendStatus:
        if self._status is not None and self._status.usable:
            return self._status
        self._status = self._probe()
        return self._status

    def _unusable(self, reason: str, fix: str) -> BackendStatus:
        return BackendStatus(self.name, False, reason, fix, description=self.description)

    def _probe(self) -> BackendStatus:
        if shutil.which(self.adb) is None:
            return self._unusable("the adb executable is not on PATH",
                                  "install Android platform-tools (apt-get install adb) and connect a phone")
        if _version("litert-torch") is None:
            return self._unusable("litert-torch (for the .tflite conversion) is not installed",
                                  f"run {LITERT_INSTALL}")
        serials = self.devices()
        if not serials:
            return self._unusable("no adb device is attached",
                                  "connect a phone with USB debugging on and accept its prompt (check `adb devices`)")
        if self.serial is None:
            self.serial = serials[0]
        elif self.serial not in serials:
            return self._unusable(f"device '{self.serial}' is not attached (attached: {', '.join(serials)})",
                                  "pass one of the attached serials")
        check = self._adb("shell", "ls", self.benchmark_model)
        if check.returncode != 0 or "No such file" in check.stdout + check.stderr:
            return self._unusable(f"{self.benchmark_model} is missing on {self.serial}",
                                  f"push TFLite's benchmark_model binary: adb push benchmark_model {self.benchmark_model}")
        model = self._adb("shell", "getprop", "ro.product.model").stdout.strip() or "android"
        release = self._adb("shell", "getprop", "ro.build.version.release").stdout.strip() or "?"
        return BackendStatus(
            self.name, True,
            device=f"adb:{model}:{self.serial}:mask{self.core_mask}",
            runtime=f"benchmark_model {self.benchmark_model} (Android {release})",
            description=self.description,
        )

    def prepare(self, model: nn.Module, input_shape: Sequence[int], path: Path) -> Path:
        return export_tflite(model, input_shape, path)

    def _benchmark(self, remote: str, job: TimingJob, runs: int) -> float:
        out = self._checked(
            "shell", "taskset", self.core_mask, self.benchmark_model, f"--graph={remote}",
            f"--num_threads={job.threads}", f"--warmup_runs={job.warmup}", f"--num_runs={runs}",
        )
        return parse_benchmark_output(out).typical_ms

    def run(self, job: TimingJob) -> Iterator[RawTiming]:
        self.require()
        self._checked("shell", "mkdir", "-p", self.remote_dir)
        reference_remote = self._push(job.reference) if job.reference is not None else None
        runs = max(1, job.runs // self.rounds)
        for index, item in enumerate(job.items):
            result = RawTiming(index, where=f"adb {self.serial} taskset {self.core_mask}")
            try:
                remote = self._push(item)
                for _ in range(self.rounds):
                    if reference_remote is not None:
                        result.reference_ms.append(self._benchmark(reference_remote, job, runs))
                    result.candidate_ms.append(self._benchmark(remote, job, runs))
                self._adb("shell", "rm", "-f", remote)
            except LatencyError as error:
                result.error = str(error)
            yield result
        if reference_remote is not None:
            self._adb("shell", "rm", "-f", reference_remote)

    def _push(self, item: TimingItem) -> str:
        remote = f"{self.remote_dir}/{Path(item.path).name}"
        self._checked("push", str(item.path), remote)
        return remote
