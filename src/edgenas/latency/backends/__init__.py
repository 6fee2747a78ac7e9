"""Latency backends by name, and what `edgenas latency backends` reports about each."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from edgenas.latency.backends.base import Backend, BackendStatus, RawTiming, TimingItem, TimingJob
from edgenas.latency.errors import LatencyError
from edgenas.util.registry import lazy, lookup

# name -> factory (imported on first use: LiteRT and ssh pull in what the others never need)
BACKENDS: dict[str, Callable[..., Backend]] = {
    "onnxruntime": lazy("edgenas.latency.backends.local", "OnnxRuntimeBackend"),
    "torch": lazy("edgenas.latency.backends.local", "TorchBackend"),
    "litert": lazy("edgenas.latency.backends.local", "LiteRTBackend"),
    "adb": lazy("edgenas.latency.backends.adb", "AdbBackend"),
    "ssh": lazy("edgenas.latency.backends.ssh", "SshBackend"),
}
BACKEND_NAMES = tuple(BACKENDS)
REMOTE_BACKENDS = ("adb", "ssh")  # measure another device; the others measure this machine


def backend_names() -> list[str]:
    return list(BACKEND_NAMES)


def get_backend(name: str, **options: Any) -> Backend:
    """A backend by name; `options` go to its constructor (adb: serial, core_mask; ssh: host, python...)."""
    factory = lookup(BACKENDS, name, "latency backend", LatencyError)
    options = {k: v for k, v in options.items() if v is not None}
    if name == "ssh":
        options.setdefault("host", os.environ.get("EDGENAS_SSH_HOST") or None)
    return factory(**options)


def backend_statuses(**options: Any) -> list[BackendStatus]:
    """Each backend's status; `options` maps a backend name to its constructor options."""
    return [get_backend(name, **options.get(name, {})).status() for name in BACKEND_NAMES]


__all__ = ["BACKENDS", "BACKEND_NAMES", "REMOTE_BACKENDS", "Backend", "BackendStatus", "RawTiming", "TimingItem", "TimingJob", "backend_names",
           "backend_statuses", "get_backend"]
