"""The timing loop, shared by the local measuring subprocess and the ssh board script.

Standalone on purpose (standard library only, no edgenas imports): the ssh backend copies this
file to the board and runs it with the board's own Python, so the board times models exactly as
this machine does. A job is a dict: {"runtime", "threads", "core", "warmup", "runs",
"max_seconds", "min_seconds", "items": [{"path", "input_shape"}], "reference": {"path", "input_shape"} | null,
"chain": bool}. `core` -1 means "the last core this process may use".
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time


def pin(core):
    """Pin this process to one core before any runtime starts its threads; return the core."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        return None
    if core == -1:
        core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def _timed(function, wall, cpu):
    """Run once; append wall-clock and CPU time (ms) of this process to the two lists."""
    start_wall, start_cpu = time.perf_counter_ns(), time.process_time_ns()
    function()
    cpu.append((time.process_time_ns() - start_cpu) / 1e6)
    wall.append((time.perf_counter_ns() - start_wall) / 1e6)


def time_pairs(run, reference, warmup, runs, max_seconds, min_seconds=0.0):
    """Warm-up, then `runs` timed runs, each followed by one reference run (A B A B ...), and
    more pairs until the timed pairs have taken `min_seconds` (wall clock).

    Returns {"candidate_ms", "reference_ms", "candidate_cpu_ms", "reference_cpu_ms"}: wall-clock
    and process CPU time of every run. With one runtime thread pinned to one core, CPU time is
    the wall time minus the time the core was lent to other processes, which is what makes a
    shared machine usable. The garbage collector is off while timing so that a collection never
    lands inside one run. Stops early (after at least 5 pairs) once `max_seconds` have passed.
    Why a minimum duration: a network of a few milliseconds (32 px) times its runs in a fraction
    of a second, and its ratio to the reference then moved between processes far more than a
    large network's; more runs cut that (docs/bench/latency.md, issue 17). A fixed duration gives
    every network, small or large, about the same share of the machine's ups and downs.
    """
    for _ in range(warmup):
        run()
        if reference is not None:
            reference()
    out = {"candidate_ms": [], "reference_ms": [], "candidate_cpu_ms": [], "reference_cpu_ms": []}
    started = time.monotonic()
    deadline, enough = started + max_seconds, started + min_seconds
    gc.disable()
    try:
        index = 0
        while index < runs or time.monotonic() < enough:
            _timed(run, out["candidate_ms"], out["candidate_cpu_ms"])
            if reference is not None:
                _timed(reference, out["reference_ms"], out["reference_cpu_ms"])
            if index >= 4 and time.monotonic() > deadline:
                break
            index += 1
    finally:
        gc.enable()
    return out


def time_chain(runs_list, reference, warmup, runs, max_seconds):
    """Time several models as a network runs its layers: in passes, each model once per pass.

    A pass runs the reference (if any) and then every model in order, timing each run. Why:
    a layer timed back to back with itself keeps its weights and buffers in the caches, which no
    layer of a real network enjoys; inside a pass the other models evict them as the network's
    other layers do. Measured here (benchmarks/latency_lut_timing.py, MnasNet networks at 224,
    onnxruntime): layer sums timed in passes predicted 100 % of held-out networks within +-10 %,
    timed alone 88 %.
    Returns one dict per model, as `time_pairs` does; the reference runs are shared (run r of a
    model pairs with the reference run of its pass).
    """
    for _ in range(warmup):
        if reference is not None:
            reference()
        for run in runs_list:
            run()
    out = [{"candidate_ms": [], "reference_ms": [], "candidate_cpu_ms": [], "reference_cpu_ms": []}
           for _ in runs_list]
    reference_ms, reference_cpu_ms = [], []
    deadline = time.monotonic() + max_seconds
    gc.disable()
    try:
        for index in range(runs):
            if reference is not None:
                _timed(reference, reference_ms, reference_cpu_ms)
            for run, record in zip(runs_list, out):
                _timed(run, record["candidate_ms"], record["candidate_cpu_ms"])
            if index >= 4 and time.monotonic() > deadline:
                break
    finally:
        gc.enable()
    for record in out:
        record["reference_ms"], record["reference_cpu_ms"] = reference_ms, reference_cpu_ms
    return out


def _error(error):
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _run_chain(job, load, threads, reference, where, out):
    """Load every item, time the loadable ones together in passes, write one line per item."""
    runs, failed = {}, {}
    for index, item in enumerate(job["items"]):
        try:
            runs[index] = load(item["path"], item["input_shape"], threads)
        except Exception as error:  # noqa: BLE001 - reported per item
            failed[index] = _error(error)
    timed = {}
    if runs:
        try:
            results = time_chain(list(runs.values()), reference, int(job["warmup"]), int(job["runs"]),
                                 float(job.get("max_seconds", 60.0)))
            timed = dict(zip(runs, results))
        except Exception as error:  # noqa: BLE001 - one failing model spoils the pass: report all
            failed.update({index: _error(error) for index in runs})
    for index in range(len(job["items"])):
        record = {"index": index, "where": where}
        if index in failed:
            record["error"] = failed[index]
        else:
            record.update(timed[index])
        out.write(json.dumps(record) + "\n")
    out.flush()


def run_job(job, loaders, out=None):
    """Time every item of `job`, writing one JSON line per item as it finishes."""
    out = out or sys.stdout
    core = pin(job.get("core"))
    load = loaders[job["runtime"]]
    threads = int(job.get("threads", 1))
    reference = None
    if job.get("reference"):
        ref = job["reference"]
        reference = load(ref["path"], ref["input_shape"], threads)
    where = f"pid {os.getpid()}" + (f" on core {core}" if core is not None else "")
    if job.get("chain"):
        _run_chain(job, load, threads, reference, where + ", in passes", out)
        return
    for index, item in enumerate(job["items"]):
        record = {"index": index, "where": where}
        try:
            run = load(item["path"], item["input_shape"], threads)
            record.update(time_pairs(run, reference, int(job["warmup"]), int(job["runs"]),
                                     float(job.get("max_seconds", 60.0)), float(job.get("min_seconds", 0.0))))
        except Exception as error:  # noqa: BLE001 - reported per item; the caller decides
            record["error"] = _error(error)
        out.write(json.dumps(record) + "\n")
        out.flush()
