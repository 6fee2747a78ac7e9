"""Kill storms: run a real command, SIGKILL it again and again at random moments, then let it finish.

The process killed is the command itself (`python -m edgenas.cli.main ...`, started directly, no
shell or wrapper whose child would live on). What the job left behind after the storm is then
compared, by the caller, with what an uninterrupted run of the same command leaves.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

EDGENAS = [sys.executable, "-m", "edgenas.cli.main"]
# Kills per storm: each lands after the job has stored something new since the last one, so six
# kills interrupt six different stages of the job (each costs a process start-up, which dominates
# these tests' time).
KILLS = 6
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(args: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """The command to completion (exit status, stdout, stderr)."""
    return subprocess.run([*EDGENAS, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=timeout)


def kill_storm(args: Sequence[str], kills: int, seed: int, *, ready: Callable[[], bool] | None = None,
               max_delay: float = 1.0, timeout: float = 120) -> int:
    """Start `edgenas ARGS` `kills` times, each time killing it with SIGKILL after it is `ready()`
    (e.g. its store exists) and a further random delay of up to `max_delay` s. Returns how many
    kills landed on a live process; a run that ends by itself before its kill is not restarted
    more than `kills` times in all."""
    rng = random.Random(seed)
    landed = 0
    for _ in range(kills):
        process = subprocess.Popen([*EDGENAS, *map(str, args)], env=ENV, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        deadline = time.time() + timeout
        while ready is not None and not ready() and process.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, max_delay))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            landed += 1
        process.wait()
        if process.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(f"edgenas {' '.join(map(str, args))} failed ({process.returncode}): "
                                 f"{process.stderr.read().decode()}")
        process.stderr.close()
    return landed
