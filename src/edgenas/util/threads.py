"""How the commands that train or search use the CPU: passive OpenMP waiting, no oversubscription.

Why: PyTorch's OpenMP threads spin while they wait for one another at the end of every parallel
region. On a machine of one's own that is free; as soon as another job shares the cores (a
second search, a browser, a CI neighbour) a spinning thread waits for a partner that is not
scheduled, and a DARTS search on 2 cores ran 911 s instead of 142 s (issue 16). `PASSIVE` makes
waiting threads sleep. Both settings are read by the OpenMP runtime when it starts, so
`configure_threads` runs before torch is imported (`edgenas.cli.main`), and what the user set
in the environment always wins:

- `OMP_WAIT_POLICY` (set by the user: kept; else PASSIVE);
- `EDGENAS_THREADS=N`: intra-op threads of training and search (default: the cores this process
  may run on, `os.sched_getaffinity`), exported as `OMP_NUM_THREADS` unless that is set.

Latency measurement is not affected: its subprocess sets its own thread count (one by default)
and pins itself to one core (`edgenas.latency.backends.base`).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from edgenas.errors import UserError

THREADS_ENV = "EDGENAS_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's or taskset's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def configure_threads(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the OpenMP environment for this process (before torch starts); returns what applies."""
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
    return {"OMP_WAIT_POLICY": env["OMP_WAIT_POLICY"], "OMP_NUM_THREADS": env["OMP_NUM_THREADS"]}
