"""Keep freed memory in the process's heap, so that scoring thousands of candidates does not pay
the kernel for fresh pages every time.

Why: glibc's malloc serves an allocation above its mmap threshold (at most 32 MB, adjusted at
run time) with a fresh `mmap` and returns it with `munmap` when freed. One-shot scoring allocates
activations of that size for every layer of every candidate (hundreds of images through a
1280-channel head), so each candidate page-faults its activations in anew: the kernel's time then
rivals the arithmetic (docs/bench/supernet.md measures it). Raising the mmap threshold and the
trim threshold keeps freed blocks in the heap for the next candidate. The cost is that the
process keeps its peak memory until it exits, which a search process does anyway.

What the user set wins: glibc reads `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` from the
environment at start-up, and when either is set this does nothing; `EDGENAS_MALLOC=default`
switches it off. On a C library without `mallopt` (macOS, musl) it does nothing either.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

SWITCH_ENV = "EDGENAS_MALLOC"
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and go back to it
_applied = False


def keep_freed_memory() -> bool:
    """Apply the setting to this process once; True when it is in force."""
    global _applied
    if _applied:
        return True
    if os.environ.get(SWITCH_ENV) == "default" or any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _applied
