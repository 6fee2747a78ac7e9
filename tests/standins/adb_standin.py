"""A stand-in for `adb` with one attached "phone" that is this machine.

The phone's file system is the folder $EDGENAS_STANDIN_ROOT (a remote path /data/x is the local
path $EDGENAS_STANDIN_ROOT/data/x). Attached serials come from $EDGENAS_STANDIN_DEVICES
(comma-separated; empty: no device). `shell taskset MASK .../benchmark_model --graph=... ...` runs
the .tflite file with the LiteRT interpreter on this machine and prints what TFLite's
benchmark_model prints; the binary counts as installed when its file exists under the root.
The phone's cores are $EDGENAS_STANDIN_CPUS (a kernel CPU list, default `0-7`; empty: the sysfs file
cannot be read) and `nproc` says $EDGENAS_STANDIN_NPROC (default: how many that list names; empty:
no nproc); taskset refuses a mask that names none of them, as Android's does, and every taskset
command's mask is appended to $EDGENAS_STANDIN_ROOT/taskset.log.
Only the commands the adb backend uses are understood; anything else fails like a real error.
"""

from __future__ import annotations

import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("EDGENAS_STANDIN_ROOT", "/tmp/edgenas-standin-phone"))
DEVICES = [d for d in os.environ.get("EDGENAS_STANDIN_DEVICES", "standin-0").split(",") if d]
CPUS = os.environ.get("EDGENAS_STANDIN_CPUS", "0-7")


def cpu_numbers(cpu_list: str) -> set[int]:
    cores: set[int] = set()
    for part in filter(None, cpu_list.split(",")):
        low, _, high = part.partition("-")
        cores.update(range(int(low), int(high or low) + 1))
    return cores


def local(remote: str) -> Path:
    return ROOT / remote.lstrip("/")


def fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def devices() -> int:
    print("List of devices attached")
    for serial in DEVICES:
        print(f"{serial}\tdevice")
    print()
    return 0


def push(source: str, target: str) -> int:
    if not os.path.exists(source):
        return fail(f"adb: error: cannot stat '{source}': No such file or directory")
    destination = local(target)
    if target.endswith("/"):
        destination = destination / os.path.basename(source)
    destination.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    shutil.copyfile(source, destination)
    size = os.path.getsize(source)
    seconds = max(time.perf_counter() - start, 1e-4)
    print(f"{source}: 1 file pushed, 0 skipped. {size / seconds / 1e6:.1f} MB/s ({size} bytes in {seconds:.3f}s)")
    return 0


def benchmark_model(binary: str, flags: list[str]) -> int:
    if not local(binary).exists():
        return fail(f"/system/bin/sh: {binary}: inaccessible or not found", 127)
    options = dict(flag[2:].split("=", 1) for flag in flags if flag.startswith("--") and "=" in flag)
    graph = options.get("graph", "")
    threads = int(options.get("num_threads", "-1"))
    warmup = int(options.get("warmup_runs", "1"))
    runs = int(options.get("num_runs", "50"))
    print("INFO: STARTING!")
    print(f"INFO: Log parameter values verbosely: [0]\nINFO: Min num runs: [{runs}]")
    print(f"INFO: Num threads: [{threads}]\nINFO: Min warmup runs: [{warmup}]\nINFO: Graph: [{graph}]")
    if not local(graph).exists():
        print(f"ERROR: Could not open '{graph}'.")
        print("ERROR: Failed to initialize the interpreter")
        return 1
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    start = time.perf_counter()
    try:
        interpreter = Interpreter(model_path=str(local(graph)), num_threads=max(threads, 1))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        print(f"ERROR: {str(error).splitlines()[0] if str(error) else 'invalid model'}")
        print("ERROR: Failed to initialize the interpreter")
        return 1
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], np.float32))
    init_us = (time.perf_counter() - start) * 1e6
    print(f"INFO: #threads used for CPU inference: [{max(threads, 1)}]")
    print(f"INFO: Loaded model {graph}")
    print(f"INFO: The input model file size (MB): {local(graph).stat().st_size / 1e6:g}")
    print(f"INFO: Initialized session in {init_us / 1000:.3f}ms.")

    def timed(n: int) -> list[float]:
        out = []
        for _ in range(n):
            begin = time.perf_counter()
            interpreter.invoke()
            out.append((time.perf_counter() - begin) * 1e6)
        return out

    def line(values: list[float], first: bool) -> str:
        ordered = sorted(values)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
        head = f"count={len(values)} " + (f"first={values[0]:.0f} " if first else "")
        return (head + f"curr={values[-1]:.0f} min={ordered[0]:.0f} max={ordered[-1]:.0f} "
                f"avg={statistics.fmean(values):g} std={statistics.pstdev(values):.0f} "
                f"p5={pick(0.05):.0f} median={statistics.median(values):.0f} p95={pick(0.95):.0f}")

    print(f"INFO: Running benchmark for at least {warmup} iterations and at least 0.5 seconds but "
          "terminate if exceeding 150 seconds.")
    warm = timed(max(warmup, 1))
    print(f"INFO: {line(warm, False)}\n")
    print(f"INFO: Running benchmark for at least {runs} iterations and at least 1 seconds but "
          "terminate if exceeding 150 seconds.")
    measured = timed(runs)
    print(f"INFO: {line(measured, True)}\n")
    print(f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {warm[0]:.0f}, "
          f"Warmup (avg): {statistics.fmean(warm):g}, Inference (avg): {statistics.fmean(measured):g}")
    print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only "
          "APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.")
    print("INFO: Memory footprint delta from the start of the tool (MB): init=4.2 overall=12.5")
    return 0


def shell(words: list[str]) -> int:
    # Real adb joins the words into one command line for the phone's shell.
    words = shlex.split(" ".join(words))
    if not words:
        return fail("interactive shells are not supported by the stand-in")
    command, args = words[0], words[1:]
    if command == "getprop":
        values = {"ro.product.model": "Standin Phone", "ro.build.version.release": "14"}
        print(values.get(args[0], "") if args else "")
        return 0
    if command == "mkdir":
        local(args[-1]).mkdir(parents=True, exist_ok=True)
        return 0
    if command == "ls":
        if not local(args[-1]).exists():
            return fail(f"ls: {args[-1]}: No such file or directory")
        print(args[-1])
        return 0
    if command == "rm":
        for path in (a for a in args if not a.startswith("-")):
            local(path).unlink(missing_ok=True)
        return 0
    if command == "cat" and args == ["/sys/devices/system/cpu/possible"]:
        if not CPUS:
            return fail(f"cat: {args[0]}: Permission denied")
        print(CPUS)
        return 0
    if command == "nproc":
        count = os.environ.get("EDGENAS_STANDIN_NPROC", str(len(cpu_numbers(CPUS))))
        if not count:
            return fail("/system/bin/sh: nproc: inaccessible or not found", 127)
        print(count)
        return 0
    if command == "taskset":
        mask, binary, flags = args[0], args[1], args[2:]
        ROOT.mkdir(parents=True, exist_ok=True)
        with open(ROOT / "taskset.log", "a") as log:
            log.write(mask + "\n")
        value = int(mask, 16)  # a bad mask fails as taskset would
        if not any(value >> core & 1 for core in cpu_numbers(CPUS or "0-7")):
            return fail(f"taskset: sched_setaffinity: {mask}: Invalid argument")
        if not binary.endswith("benchmark_model"):
            return fail(f"/system/bin/sh: {binary}: not supported by the stand-in", 127)
        return benchmark_model(binary, flags)
    return fail(f"/system/bin/sh: {command}: not supported by the stand-in", 127)


def main(argv: list[str]) -> int:
    serial = None
    while argv and argv[0] == "-s":
        serial, argv = argv[1], argv[2:]
    if not argv:
        return fail("adb: no command given")
    command, args = argv[0], argv[1:]
    if command == "devices":
        return devices()
    if not DEVICES:
        return fail("adb: no devices/emulators found")
    if serial is not None and serial not in DEVICES:
        return fail(f"adb: device '{serial}' not found")
    if serial is None and len(DEVICES) > 1:
        return fail("adb: more than one device/emulator")
    if command == "push":
        return push(args[0], args[1])
    if command == "shell":
        return shell(args)
    return fail(f"adb: unknown command {command}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
