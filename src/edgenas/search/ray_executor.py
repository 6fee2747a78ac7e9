"""Ray executor: K evaluations at once as Ray tasks, latency through one actor per device.

Why Ray: it is what the field already runs for distributed tuning, it schedules by declared
resources (CPUs and GPUs per trial), and the same code runs on a laptop (a local cluster started
here) or on a cluster (`address=`). The search loop talks to this class through the `Executor`
interface and does not know it is remote.

Latency is different from accuracy: two measurements must never share a device, or each slows
the other. A `LatencyActor` owns one device and serves one request at a time
(`max_concurrency=1`); evaluators running in any worker reach it through `RayLatencyClient`.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from edgenas.errors import UserError
from edgenas.evaluators.base import Evaluator, TrialResult
from edgenas.search.executors import Completed, Executor, evaluate_safely


def import_ray() -> Any:
    """The ray module, or a UserError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed; install the extra: pip install 'edgenas[ray]'") from None
    return ray


def _evaluate_in_worker(evaluator: Evaluator, arch: str, threads: int) -> tuple[TrialResult, float]:
    import torch

    torch.set_num_threads(max(1, threads))
    return evaluate_safely(evaluator, arch)


class RayExecutor(Executor):
    """Runs up to `slots` evaluations at once as Ray tasks with declared resources.

    With no `address`, a local cluster of `num_cpus` CPUs is started (and shut down by `close`);
    with an address ("auto", "ray://host:10001", "host:6379"), the running cluster is joined.
    """

    def __init__(
        self,
        slots: int = 2,
        address: str | None = None,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        num_cpus: int | None = None,
        latency_cpus: float = 0,
    ) -> None:
        if slots < 1:
            raise UserError(f"the Ray executor needs at least one slot, got {slots}")
        if cpus_per_trial <= 0 or gpus_per_trial < 0 or latency_cpus < 0:
            raise UserError("cpus per trial must be positive, gpus per trial and latency cpus not negative")
        self.slots = slots
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.num_cpus = num_cpus
        self.latency_cpus = latency_cpus
        self._ray: Any = None
        self._started_here = False
        self._task: Any = None
        self._evaluator_ref: Any = None
        self._pending: dict[Any, tuple[int, str]] = {}

    def _connect(self) -> None:
        """Join or start Ray once; only a cluster started here is shut down by `close`."""
        if self._ray is None:
            already = import_ray().is_initialized()
            self._ray = connect(self.address, self.num_cpus)
            self._started_here = self.address is None and not already

    def latency_service(self, make_estimator: Any) -> RayLatencyClient:
        """A latency actor holding the device: trials running at once queue their measurements.

        It reserves `latency_cpus` (default 0: on one machine the measuring subprocess pins itself
        to the quietest core anyway; on a cluster reserve 1 so that no trial trains beside it).
        """
        self._connect()
        return latency_actor(make_estimator, num_cpus=self.latency_cpus)

    def open(self, evaluator: Evaluator) -> None:
        self._connect()
        self._task = self._ray.remote(num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial)(
            _evaluate_in_worker
        )
        self._evaluator_ref = self._ray.put(evaluator)

    def submit(self, trial_id: int, arch: str) -> None:
        if self._task is None:
            raise RuntimeError("RayExecutor.submit before open()")
        if len(self._pending) >= self.slots:
            raise RuntimeError(f"all {self.slots} slots are busy; call wait_any() first")
        threads = max(1, int(self.cpus_per_trial))
        ref = self._task.remote(self._evaluator_ref, arch, threads)
        self._pending[ref] = (trial_id, arch)

    def wait_any(self) -> list[Completed]:
        if not self._pending:
            return []
        ready, _ = self._ray.wait(list(self._pending), num_returns=1)
        done = []
        for ref in ready:
            trial_id, arch = self._pending.pop(ref)
            try:
                result, seconds = self._ray.get(ref)
            except Exception as error:  # noqa: BLE001 - a dead worker is a failed trial, not a crash
                result, seconds = TrialResult.failed(f"Ray worker failed: {type(error).__name__}: {error}"), 0.0
            done.append(Completed(trial_id, arch, result, seconds))
        return done

    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        for ref in list(self._pending):
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        if self._ray is not None and self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
        self._ray = None
        self._task = None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a host:port that does not answer: Ray itself retries for minutes."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Ray address '{address}' is not host:port (or ray://host:port, or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise UserError(
            f"cannot reach a Ray cluster at '{address}' ({error.strerror or error}); start one with "
            "'ray start --head' or leave the address out to run a local cluster"
        ) from None


def check_ray_available(address: str | None) -> None:
    """Before a search writes anything: Ray is installed and the cluster, if named, answers."""
    import_ray()
    if address is not None:
        _check_reachable(address)


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """Start a local Ray cluster (address None) or join one; a dead address is a UserError."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address is not None:
        _check_reachable(address)
    # Workers import edgenas from the same environment; keep Ray quiet and local-first.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot reach a Ray cluster at '{address}' ({first_line}); start one with "
            "'ray start --head' or leave the address out to run a local cluster"
        ) from None
    return ray


class LatencyActorImpl:
    """Holds one device's latency estimator; Ray runs one request at a time on it."""

    def __init__(self, make_estimator: Any) -> None:
        self.estimator = make_estimator()
        self.served = 0
        self.busy = 0
        self.most_at_once = 0

    def latency(self, arch: str) -> Any:
        self.busy += 1
        self.most_at_once = max(self.most_at_once, self.busy)
        try:
            return self.estimator.latency(arch)
        finally:
            self.busy -= 1
            self.served += 1

    def stats(self) -> dict[str, int]:
        """Requests served and the most ever in progress at once (1 when the device was never shared)."""
        return {"served": self.served, "most_at_once": self.most_at_once}


class RayLatencyClient:
    """What an evaluator holds in place of an estimator: forwards `latency(arch)` to the actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def latency(self, arch: str) -> Any:
        import ray

        return ray.get(self.actor.latency.remote(arch))

    def stats(self) -> dict[str, int]:
        import ray

        return ray.get(self.actor.stats.remote())


def latency_actor(make_estimator: Any, num_cpus: float = 1, name: str | None = None) -> RayLatencyClient:
    """Start a device-bound latency actor and return a client for evaluators.

    `make_estimator` is a picklable zero-argument callable building the estimator inside the
    actor, so device handles (an adb connection, a pinned core) live in exactly one process.
    """
    ray = import_ray()
    actor_class = ray.remote(num_cpus=num_cpus, max_concurrency=1)(LatencyActorImpl)
    options = {"name": name} if name else {}
    return RayLatencyClient(actor_class.options(**options).remote(make_estimator))
