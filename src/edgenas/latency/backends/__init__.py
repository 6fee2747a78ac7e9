"""Latency backends by name, and what `edgenas latency backends` reports about each."""

from __future__ import annotations

import os
from typing import Any

from edgenas.latency.backends.base import Backend, BackendStatus, RawTiming, TimingItem, TimingJob
from edgenas.latency.errors import LatencyError

BACKEND_NAMES = ("onnxruntime", "torch", "litert", "adb", "ssh")


def backend_names() -> list[str]:
    return list(BACKEND_NAMES)


def get_backend(name: str, **options: Any) -> Backend:
    """A backend by name; `options` go to its constructor (adb: serial, core_mask; ssh: host, python...)."""
    options = {k: v for k, v in options.items() if v is not None}
    if name == "onnxruntime":
        from edgenas.latency.backends.local import OnnxRuntimeBackend
        return OnnxRuntimeBackend(**options)
    if name == "torch":
        from edgenas.latency.backends.local import TorchBackend
        return TorchBackend(**options)
    if name == "litert":
        from edgenas.latency.backends.local import LiteRTBackend
        return LiteRTBackend(**options)
    if name == "adb":
        from edgenas.latency.backends.adb import AdbBackend
        return AdbBackend(**options)
    if name == "ssh":
        from edgenas.latency.backends.ssh import SshBackend
        options.setdefault("host", os.environ.get("EDGENAS_SSH_HOST") or None)
        return SshBackend(**options)
    raise LatencyError(f"unknown latency backend '{name}'; choose one of {', '.join(BACKEND_NAMES)}")


def backend_statuses(**options: Any) -> list[BackendStatus]:
    """Each backend's status; `options` maps a backend name to its constructor options."""
    return [get_backend(name, **options.get(name, {})).status() for name in BACKEND_NAMES]


__all__ = ["Backend", "BackendStatus", "RawTiming", "TimingItem", "TimingJob", "backend_names",
           "backend_statuses", "get_backend"]
