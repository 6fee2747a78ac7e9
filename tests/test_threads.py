"""Every command sets its thread behaviour before torch's OpenMP runtime starts (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edgenas.errors import UserError
from edgenas.util.threads import configure_threads, usable_cores


def test_passive_waiting_and_the_usable_cores_by_default_what_the_user_set_wins():
    env: dict[str, str] = {}
    assert configure_threads(env) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(usable_cores())}
    mine = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    assert configure_threads(mine) == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    asked = {"OMP_NUM_THREADS": "3", "EDGENAS_THREADS": "1"}
    assert configure_threads(asked)["OMP_NUM_THREADS"] == "1"  # asked for by name beats an inherited value
    for bad in ("0", "two", "-1"):
        with pytest.raises(UserError, match="EDGENAS_THREADS"):
            configure_threads({"EDGENAS_THREADS": bad})


def test_the_cli_configures_openmp_before_torch_starts():
    """torch reads OMP_NUM_THREADS once, when it is imported: a command that configured the threads
    after importing torch would leave torch at its own default (all cores)."""
    script = ("import os; from edgenas.cli.main import main; main(['space', 'show', 'nb201']); "
              "import torch; print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    done = subprocess.run([sys.executable, "-c", script], env={**env, "EDGENAS_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1 PASSIVE"
