"""Training commands as users run them, alone and beside a CPU-bound neighbour, before and after
`edgenas` set its own OpenMP behaviour (issue 16).

Commands (each the real CLI in a fresh process, sized to tens of seconds on 2 cores):
- `darts`: a short DARTS search (3 cells, 4 channels, 10 steps of 32 CIFAR-10 images);
- `proxy`: one proxy evaluation (`edgenas data proxy`, 60 steps of 64 CIFAR-10 images);
- `train`: one final-training epoch (`edgenas train`, 2,000 digits).

Modes (`--modes`, a comma list):
- `before`: what the commands did before issue 16: libgomp's default wait (spin 300,000
  iterations, then sleep), reproduced with `GOMP_SPINCOUNT=300000`, which libgomp takes over
  any wait policy;
- `passive`: `OMP_WAIT_POLICY=PASSIVE` (waiting threads sleep at once);
- `spin:N`: `GOMP_SPINCOUNT=N` (spin N iterations, then sleep);
- `after`: what the commands do now, with nothing set (`edgenas.util.threads` decides).

Neighbour: one busy-looping Python process per run (a second job on a 2-core machine), started
before the command and stopped after it. Each (command, mode, neighbour) runs `--repeats` times,
interleaved; the table gives the median wall time and the ratios.

    .venv/bin/python benchmarks/commands_shared_machine.py [--repeats 2] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EDGENAS = [sys.executable, "-m", "edgenas.cli.main"]
ARCH = "ds_r1_k3_s1_c16 ir_r2_k3_s2_e6_c24 ir_r2_k5_s2_e3_c40 ir_r2_k3_s2_e6_c80"


def commands(out: Path) -> dict[str, list[str]]:
    cifar = ["--dataset", "cifar10-jpeg:1"]  # the shards in $EDGENAS_DATA_DIR/cifar10
    return {
        "darts": ["darts", "search", *cifar, "--layers", "3", "--channels", "4", "--batch-size", "32",
                  "--limit", "1000", "--steps-per-epoch", "10", "--epochs", "1", "--no-progress", "--out", str(out)],
        "proxy": ["data", "proxy", ARCH, *cifar, "--proxy-subset", "2000", "--proxy-steps", "60", "--json"],
        "train": ["train", ARCH, "--dataset", "digits", "--subset", "2000", "--epochs", "1", "--quiet",
                  "--force", "--out", str(out)],
    }


def mode_environment(mode: str) -> dict[str, str]:
    """The variables a mode sets for the command (on top of an environment without OMP_*)."""
    if mode == "before":
        return {"GOMP_SPINCOUNT": "300000"}
    if mode == "passive":
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    if mode.startswith("spin:"):
        return {"GOMP_SPINCOUNT": mode.removeprefix("spin:")}
    if mode == "after":
        return {}
    raise SystemExit(f"unknown mode '{mode}'; use before, passive, spin:N or after")


def run_once(argv: list[str], mode: str, neighbour: bool, out: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "EDGENAS_THREADS"))}
    env.update(mode_environment(mode))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if neighbour else None
    try:
        subprocess.run(["rm", "-rf", str(out)], check=True)
        start = time.perf_counter()
        done = subprocess.run([*EDGENAS, *argv], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if done.returncode != 0:
        raise SystemExit(f"edgenas {' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--commands", default="darts,proxy,train")
    parser.add_argument("--modes", default="before,after", help="comma list of before, passive, spin:N, after")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                        help="the folder holding cifar10/ (default ../shared/data)")
    args = parser.parse_args()
    os.environ["EDGENAS_DATA_DIR"] = args.data_dir
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out"
        table = commands(out)
        names = args.commands.split(",")
        times: dict[tuple[str, str, bool], list[float]] = {}
        modes = args.modes.split(",")
        for mode in modes:
            mode_environment(mode)  # refuse an unknown mode before the first run
        for repeat in range(args.repeats):
            for name in names:
                for neighbour in (False, True):
                    for mode in modes if repeat % 2 == 0 else modes[::-1]:
                        seconds = run_once(table[name], mode, neighbour, out)
                        times.setdefault((name, mode, neighbour), []).append(seconds)
                        print(f"{name:6} {mode:12} {'with' if neighbour else 'alone':5} {seconds:7.1f} s", flush=True)
    print(f"\n{os.cpu_count()} cores; median of {args.repeats} runs, wall seconds; "
          f"ratios against `{modes[0]}` in the same setting")
    print("| command | mode | alone (s) | + neighbour (s) | neighbour slowdown | alone vs first mode | "
          "+ neighbour vs first mode |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        base_alone = statistics.median(times[(name, modes[0], False)])
        base_with = statistics.median(times[(name, modes[0], True)])
        for mode in modes:
            alone = statistics.median(times[(name, mode, False)])
            with_ = statistics.median(times[(name, mode, True)])
            print(f"| {name} | {mode} | {alone:.1f} | {with_:.1f} | {with_ / alone:.2f}x | "
                  f"{alone / base_alone:.2f} | {with_ / base_with:.2f} |")


if __name__ == "__main__":
    main()
