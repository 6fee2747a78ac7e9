"""An Android phone over adb: convert to `.tflite`, push, run TFLite's `benchmark_model`, parse.

MnasNet measured latency this way (TFLite, one thread on a big core of a Pixel 1). Each item is
timed in `rounds` rounds that alternate the candidate and the reference (B A B A ... at the
granularity of one benchmark_model call each); the per-round typical times are the samples.
The phone must have the `benchmark_model` binary (from TensorFlow's releases) at `benchmark_model`.
benchmark_model times one model per call, so LUT layers are timed alone here, not in passes.

Which core: one, as MnasNet measured. By default the highest-numbered core the phone has (read
from /sys/devices/system/cpu/possible, else `nproc`, when the backend first probes the phone): on
big.LITTLE and DynamIQ phones the cores are numbered little cluster first, so the last one is a big
(or the prime) core: cpu 7 on the usual 4+4 and 1+3+4 eight-core layouts, cpu 3 on a 2+2 quad such as
the Pixel 1's Snapdragon 821. Not a mask of the whole big cluster (the old default `f0`): the
scheduler then moves the benchmark between cores of different caches and, on tri-cluster phones,
different speeds. Where neither file nor `nproc` answers, cpu 7 (`80`); `core_mask` (`--core-mask`)
picks any other mask. The device key names the mask (`adb:<model>:<serial>:mask80`), so figures
from different cores are never mixed in the cache.
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
FALLBACK_CORE = 7  # when the phone says nothing about its cores: the big core of 4+4 / 1+3+4 layouts


def mask_cores(mask: str) -> list[int]:
    """The cores a taskset mask (hex, e.g. `80` or `0x80`) names: `80` -> [7], `f0` -> [4, 5, 6, 7]."""
    value = int(mask, 16)
    if value <= 0:
        return []
    return [core for core in range(value.bit_length()) if value >> core & 1]


def mask_of_core(core: int) -> str:
    """The taskset mask (hex, no prefix) of one core: 7 -> `80`."""
    return f"{1 << core:x}"


def highest_core(cpu_list: str) -> int | None:
    """The highest core in a kernel CPU list such as `0-7` or `0-3,6,7`; None if it is not one."""
    cores = []
    for part in cpu_list.strip().split(","):
        low, _, high = part.strip().partition("-")
        if not (low.isdigit() and (not high or high.isdigit())):
            return None
        cores.append(int(high or low))
    return max(cores) if cores else None


class AdbBackend(Backend):
    name = "adb"
    suffix = ".tflite"
    slow_to_prepare = True
    description = ("Android phone over adb: TFLite benchmark_model, 1 thread, pinned by taskset to one core "
                   "(default: the phone's highest-numbered, a big core)")
    times_in_passes = False

    def __init__(
        self,
        serial: str | None = None,
        core_mask: str | None = None,
        benchmark_model: str = DEFAULT_BENCHMARK_MODEL,
        remote_dir: str = DEFAULT_REMOTE_DIR,
        rounds: int = 3,
        adb: str = "adb",
        timeout: float = 600.0,
    ) -> None:
        self.serial = serial
        self.core_mask = core_mask  # None: the phone's highest-numbered core, found on the first probe
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
        if self.core_mask is None:
            self.core_mask = mask_of_core(self._highest_core())
        try:
            cores = mask_cores(self.core_mask)
        except ValueError:
            cores = []
        if not cores:
            return self._unusable(f"core mask '{self.core_mask}' names no core",
                                  "pass a hexadecimal taskset mask, e.g. --core-mask 80 for cpu 7")
        model = self._adb("shell", "getprop", "ro.product.model").stdout.strip() or "android"
        release = self._adb("shell", "getprop", "ro.build.version.release").stdout.strip() or "?"
        pinned = f"cpu {cores[0]}" if len(cores) == 1 else f"cpus {','.join(map(str, cores))}"
        return BackendStatus(
            self.name, True,
            device=f"adb:{model}:{self.serial}:mask{self.core_mask}",
            runtime=f"benchmark_model {self.benchmark_model} (Android {release})",
            description=f"{self.description}; pinned to {pinned} (taskset mask {self.core_mask})",
        )

    def _highest_core(self) -> int:
        """The phone's highest-numbered core: from the kernel's CPU list, else `nproc`, else cpu 7."""
        listed = self._adb("shell", "cat", "/sys/devices/system/cpu/possible")
        core = highest_core(listed.stdout) if listed.returncode == 0 else None
        if core is None:
            counted = self._adb("shell", "nproc")
            words = counted.stdout.split()
            if counted.returncode == 0 and words and words[0].isdigit() and int(words[0]) > 0:
                core = int(words[0]) - 1
        return FALLBACK_CORE if core is None else core

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
