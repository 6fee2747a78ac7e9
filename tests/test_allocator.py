"""Freed memory stays in the heap for the next candidate (edgenas.util.allocator)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Allocate, fill and free a 64 MB tensor ten times to warm up, then ten times more; print the page
# faults the second ten took.
_SCRIPT = """
import resource, sys, torch
from edgenas.util.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "1" else False
for rounds in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        block = torch.ones(16 * 1024 * 1024)  # 64 MB: above glibc's largest dynamic mmap threshold
        del block
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_PAGES = 64 * 1024 * 1024 // 4096  # faults one fresh 64 MB block costs in 4 KB pages


def _faults(apply: bool, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "EDGENAS_MALLOC"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, "1" if apply else "0"], env={**environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_freed_block_is_reused_instead_of_faulted_in_anew():
    applied, kept = _faults(True)
    assert applied == "True"
    _, default = _faults(False)
    assert default > 5 * _PAGES  # glibc's default: every block mapped and faulted in again
    assert kept < _PAGES  # kept: the warmed-up heap is reused


def test_what_the_user_set_wins():
    assert _faults(True, MALLOC_MMAP_THRESHOLD_="65536")[0] == "False"
    assert _faults(True, EDGENAS_MALLOC="default")[0] == "False"
