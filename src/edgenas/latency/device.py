"""Who is measuring: the identity of this machine's CPU, and the core to pin a measurement to.

The latency cache and the LUT are keyed by device identity, so two machines of the same CPU model
share entries and a different CPU never reuses them.
"""

from __future__ import annotations

import os
import platform
from functools import cache

import psutil


@cache
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def local_device() -> str:
    """This machine as a cache key: architecture, CPU model and logical CPU count."""
    return f"local:{platform.machine()}:{cpu_model()}:{os.cpu_count()}cpu"


def allowed_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def quietest_core(sample_seconds: float = 0.2) -> int | None:
    """The allowed core with the least load right now (None where pinning is not supported).

    On a shared machine a measurement pinned to the busier core waits for its neighbour; picking
    the quieter one at the start lowers the noise, and the interleaved reference absorbs the rest.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = allowed_cores()
    if len(cores) == 1:
        return cores[0]
    load = psutil.cpu_percent(interval=sample_seconds, percpu=True)
    return min(cores, key=lambda core: load[core] if core < len(load) else 100.0)
