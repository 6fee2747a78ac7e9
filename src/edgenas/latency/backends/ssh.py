"""A board (Raspberry Pi and the like) over ssh: copy the ONNX files, time them with the board's
own Python and onnxruntime, read JSON lines back.

The board runs the very timing loop this machine runs (`timing.py` and `runners.py` are copied
next to the models), pinned to one core, with the reference interleaved. Nothing of edgenas needs
to be installed there: only python3 with numpy and onnxruntime.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch import nn

from edgenas.export import export_onnx
from edgenas.latency import runners, timing
from edgenas.latency.backends.base import Backend, BackendStatus, RawTiming, TimingJob
from edgenas.latency.errors import LatencyError

_PROBE = """
import json, os, platform, sys
info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
try:
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
           if l.lower().startswith(("model name", "hardware", "cpu model"))]
    info["cpu"] = cpu[0] if cpu else platform.processor()
except OSError:
    info["cpu"] = platform.processor()
try:
    import onnxruntime, numpy
    info["onnxruntime"] = onnxruntime.__version__
except Exception as error:
    info["missing"] = str(error)
print(json.dumps(info))
"""

_MAIN = """
import json, sys
sys.path.insert(0, {directory!r})
import _edgenas_runners, _edgenas_timing
with open({job!r}) as handle:
    job = json.load(handle)
_edgenas_timing.run_job(job, _edgenas_runners.RUNNERS)
"""


class SshBackend(Backend):
    name = "ssh"
    suffix = ".onnx"
    description = "a board over ssh: the board's python3 + onnxruntime, 1 thread, pinned core"

    def __init__(
        self,
        host: str | None = None,
        python: str = "python3",
        remote_dir: str = "/tmp/edgenas-latency",
        core: int = -1,
        ssh: str = "ssh",
        scp: str = "scp",
        connect_timeout: int = 10,
        timeout: float = 900.0,
    ) -> None:
        self.host = host
        self.python = python
        self.remote_dir = remote_dir.rstrip("/")
        self.core = core
        self.ssh = ssh
        self.scp = scp
        self.options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"]
        self.timeout = timeout
        self._status: BackendStatus | None = None

    # --- transport -------------------------------------------------------------------------
    def _call(self, command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise LatencyError(f"'{command[0]}' is not installed; install an ssh client (openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise LatencyError(f"{self.host} did not answer in {self.timeout:.0f} s; check the board") from None

    def _remote(self, *args: str, stdin: str | None = None) -> str:
        done = self._call([self.ssh, *self.options, str(self.host), *args], stdin)
        if done.returncode != 0:
            said = (done.stderr.strip() or f"exit status {done.returncode}").splitlines()[-1]
            if done.returncode == 255:
                raise LatencyError(f"cannot reach {self.host} over ssh ({said[:200]}); check the host name "
                                   "and that `ssh HOST` logs in without a password prompt")
            raise LatencyError(f"the command on {self.host} failed: {said[:200]}")
        return done.stdout

    def _copy(self, files: Sequence[Path]) -> None:
        done = self._call([self.scp, "-q", *self.options, *map(str, files), f"{self.host}:{self.remote_dir}/"])
        if done.returncode != 0:
            said = (done.stderr.strip() or f"exit status {done.returncode}").splitlines()[-1]
            raise LatencyError(f"scp to {self.host} failed: {said[:200]}; check disk space and {self.remote_dir}")

    # --- Backend ---------------------------------------------------------------------------
    def status(self) -> BackendStatus:
        if self._status is not None and self._status.usable:
            return self._status
        self._status = self._probe()
        return self._status

    def _probe(self) -> BackendStatus:
        def unusable(reason: str, fix: str) -> BackendStatus:
            return BackendStatus(self.name, False, reason, fix, description=self.description)

        if not self.host:
            return unusable("no host given", "pass --host user@board (or set EDGENAS_SSH_HOST)")
        try:
            info = json.loads(self._remote(self.python, "-", stdin=_PROBE).strip().splitlines()[-1])
        except LatencyError as error:
            return unusable(str(error).split(";")[0], "check the host name and that `ssh HOST` logs in "
                            "without a password (BatchMode)")
        except (json.JSONDecodeError, IndexError):
            return unusable(f"{self.python} on {self.host} did not run the probe", f"install python3 on {self.host}")
        if "missing" in info:
            return unusable(f"onnxruntime/numpy missing on {self.host} ({info['missing'][:100]})",
                            f"run: ssh {self.host} {self.python} -m pip install onnxruntime numpy")
        return BackendStatus(
            self.name, True,
            device=f"ssh:{self.host}:{info['machine']}:{info['cpu']}:{info['cpus']}cpu",
            runtime=f"onnxruntime {info['onnxruntime']} (python {info['python']})",
            description=self.description,
        )

    def prepare(self, model: nn.Module, input_shape: Sequence[int], path: Path) -> Path:
        return export_onnx(model, input_shape, path)

    def run(self, job: TimingJob) -> Iterator[RawTiming]:
        self.require()
        staging = Path(job.items[0].path).parent if job.items else Path(".")
        remote = self.remote_dir
        files = [Path(item.path) for item in job.items]
        if job.reference is not None:
            files.append(Path(job.reference.path))
        payload = {
            "runtime": "onnxruntime",
            "threads": job.threads,
            "core": self.core if job.core is None else job.core,
            "warmup": job.warmup,
            "runs": job.runs,
            "max_seconds": job.max_seconds,
            "min_seconds": job.min_seconds,
            "chain": job.chain,
            "items": [{"path": f"{remote}/{Path(i.path).name}", "input_shape": list(i.input_shape)}
                      for i in job.items],
            "reference": (
                {"path": f"{remote}/{Path(job.reference.path).name}",
                 "input_shape": list(job.reference.input_shape)} if job.reference is not None else None
            ),
        }
        job_file = staging / "edgenas_job.json"
        job_file.write_text(json.dumps(payload))
        support = [staging / "_edgenas_timing.py", staging / "_edgenas_runners.py"]
        support[0].write_text(Path(timing.__file__).read_text())
        support[1].write_text(Path(runners.__file__).read_text())
        self._remote("mkdir", "-p", remote)
        self._copy(files + [job_file] + support)
        script = _MAIN.format(directory=remote, job=f"{remote}/{job_file.name}")
        try:
            out = self._remote(self.python, "-", stdin=script)
        finally:
            names = " ".join(f"{remote}/{f.name}" for f in files + [job_file] + support)
            self._call([self.ssh, *self.options, str(self.host), f"rm -f {names}"])
        for line in out.splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            yield RawTiming(record["index"], record.get("candidate_ms", []), record.get("reference_ms", []),
                            where=f"ssh {self.host} {record.get('where', '')}".strip(),
                            candidate_cpu_ms=record.get("candidate_cpu_ms", []),
                            reference_cpu_ms=record.get("reference_cpu_ms", []), error=record.get("error"))
