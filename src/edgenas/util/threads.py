"""How the commands that train or search use the CPU: how OpenMP threads wait, and how many.

Why: PyTorch's OpenMP threads wait for one another at the end of every parallel region, and a
DARTS step runs thousands of small ones. How they should wait depends on whether the cores are
shared (measured in docs/bench/threads.md):
- alone, waiting threads should spin a little: sleeping at once (`OMP_WAIT_POLICY=PASSIVE`)
  makes every region pay a wake-up, which a DARTS step feels;
- beside another busy job (a second search, a CI neighbour), they should sleep: a spinning thread
  burns the core its descheduled partner needs (issue 16: several times slower), and even a
  short spin keeps part of that loss.
So a command looks at the machine when it starts: if other jobs keep at least half a core busy
(the machine's CPU time over a tenth of a second, `/proc/stat`; elsewhere the load average), waiting
threads sleep (`OMP_WAIT_POLICY=PASSIVE`); otherwise they spin for a short while
and then sleep (`GOMP_SPINCOUNT`, libgomp's spin count, which PyTorch's Linux builds use). A
neighbour that starts later still slows a spinning run: for a run you know will share the
machine, set `OMP_WAIT_POLICY=PASSIVE`. Both are read by the OpenMP runtime when it starts, so
`configure_threads` runs before torch is imported (`edgenas.cli.main`), and what the user set in
the environment always wins:

- `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` (either set by the user: kept, nothing added);
- `EDGENAS_THREADS=N`: intra-op threads of training and search (default: the cores this process
  may run on, `os.sched_getaffinity`), exported as `OMP_NUM_THREADS` unless that is set.

Latency measurement is not affected: its subprocess sets its own thread count (one by default)
and pins itself to one core (`edgenas.latency.backends.base`).
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping

from edgenas.errors import UserError

THREADS_ENV = "EDGENAS_THREADS"
# Spin iterations before a waiting thread sleeps when the machine is free (tens of microseconds):
# enough to bridge most gaps between a step's parallel regions; ten times more was a little faster
# alone and far slower once a neighbour turned up (docs/bench/threads.md).
SPIN_WHEN_ALONE = 3000
# Cores kept busy by others from which the machine counts as shared.
BUSY_CORES = 0.5
# How long to watch the machine's CPU time before deciding (a command's start-up pays it once).
WATCH_SECONDS = 0.1


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's or taskset's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far; steal time counts as busy (a VM's
    host running someone else)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def busy_cores(window: float = WATCH_SECONDS) -> float:
    """How many cores other jobs keep busy now: the machine's busy share over `window` seconds
    (this process sleeps meanwhile) times its cores; the one-minute load average where there is
    no /proc/stat."""
    try:
        busy0, total0 = _cpu_ticks()
        time.sleep(window)
        busy1, total1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - Windows
            return float("inf")  # unknown: sleeping threads never lose badly
    share = (busy1 - busy0) / max(total1 - total0, 1)
    return share * (os.cpu_count() or 1)


def configure_threads(
    environ: MutableMapping[str, str] | None = None, busy: float | None = None
) -> dict[str, str]:
    """Set the OpenMP environment for this process (before torch starts); returns what applies.

    `busy`: the cores others keep busy, to decide on (default: `busy_cores()`, watched now)."""
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        if (busy_cores() if busy is None else busy) >= BUSY_CORES:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        else:
            env["GOMP_SPINCOUNT"] = str(SPIN_WHEN_ALONE)
    text = env.get(THREADS_ENV)
    if text is not None:
        try:
            threads = int(text)
        except ValueError:
            threads = 0
        if threads < 1:
            raise UserError(f"{THREADS_ENV}={text!r} is not a positive number of threads; e.g. {THREADS_ENV}=2")
        env["OMP_NUM_THREADS"] = str(threads)  # asked for by name: it wins over an inherited value
    else:
        env.setdefault("OMP_NUM_THREADS", str(usable_cores()))
    names = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
    return {name: env[name] for name in names if name in env}
