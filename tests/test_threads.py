"""Every command sets its thread behaviour before torch's OpenMP runtime starts (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from edgenas.errors import UserError
from edgenas.util.threads import busy_cores, configure_threads, usable_cores


def test_waiting_follows_the_busy_cores_and_what_the_user_set_wins():
    cores = str(usable_cores())
    # A free machine: spin a short while, then sleep; a busy one: sleep at once.
    assert configure_threads({}, busy=0.1) == {"GOMP_SPINCOUNT": "3000", "OMP_NUM_THREADS": cores}
    assert configure_threads({}, busy=1.2) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": cores}
    # Either wait setting of the user's is kept and nothing is added beside it (libgomp lets a
    # spin count override the policy, so adding one would undo the user's choice).
    mine = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    assert configure_threads(mine, busy=0.0) == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    spin = {"GOMP_SPINCOUNT": "100"}
    assert configure_threads(spin, busy=5.0) == {"GOMP_SPINCOUNT": "100", "OMP_NUM_THREADS": cores}
    asked = {"OMP_NUM_THREADS": "3", "EDGENAS_THREADS": "1"}
    assert configure_threads(asked, busy=0.0)["OMP_NUM_THREADS"] == "1"  # asked for by name beats an inherited value
    for bad in ("0", "two", "-1"):
        with pytest.raises(UserError, match="EDGENAS_THREADS"):
            configure_threads({"EDGENAS_THREADS": bad})


def test_busy_cores_sees_a_busy_neighbour():
    """A process spinning on one core is seen as at least most of a core (half a core decides the
    wait policy), and never as more cores than the machine has."""
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        with_neighbour = busy_cores(0.5)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert 0.8 <= with_neighbour <= (os.cpu_count() or 1) + 1e-9


def test_the_cli_configures_openmp_before_torch_starts():
    """torch reads OMP_NUM_THREADS once, when it is imported: a command that configured the threads
    after importing torch would leave torch at its own default (all cores)."""
    script = ("import os; from edgenas.cli.main import main; main(['space', 'show', 'nb201']); "
              "import torch; print(torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'), "
              "os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    done = subprocess.run([sys.executable, "-c", script], env={**env, "EDGENAS_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    threads, policy, spin = done.stdout.strip().splitlines()[-1].split()
    assert threads == "1"
    # One of the two wait settings, whichever the machine's load called for.
    assert (policy, spin) in {("PASSIVE", "None"), ("None", "3000")}
