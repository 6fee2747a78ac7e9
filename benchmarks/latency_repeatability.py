"""Repeatability: one architecture measured in 5 separate processes, raw medians beside the ratio.

Each run is a separate `edgenas latency measure --no-cache --json` process (own export, own pinned
measuring subprocess). The reported figure is the calibrated latency (median ratio to the
interleaved MobileNetV2 reference x the reference's cached baseline); its spread (max/min) is
shown beside the spreads of the raw wall-clock and CPU-time medians, which move with the load.

    .venv/bin/python benchmarks/latency_repeatability.py --arch mnasnet_a1 --resolution 224
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgenas.cli.output import print_table


def spread(values: list[float]) -> float:
    return max(values) / min(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mnasnet_a1")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cache", default=None, help="default: a fresh temporary cache")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cache = args.cache or str(Path(tempfile.mkdtemp()) / "latency.sqlite")
    edgenas = [sys.executable, "-m", "edgenas.cli.main"]
    rows, results = [], []
    for index in range(args.processes):
        started = time.time()
        done = subprocess.run(
            [*edgenas, "latency", "measure", args.arch, "--backend", args.backend, "--resolution",
             str(args.resolution), "--runs", str(args.runs), "--no-cache", "--cache", cache, "--json"],
            capture_output=True, text=True, env=dict(os.environ),
        )
        if done.returncode != 0:
            sys.exit(f"measurement {index + 1} failed: {done.stderr.strip()}")
        result = json.loads(done.stdout)
        results.append(result)
        rows.append((index + 1, time.strftime("%H:%M:%S", time.localtime(started)),
                     f"{result['wall_median_ms']:.3f}", f"{result['median_ms']:.3f}",
                     f"{result['reference_ratio']:.4f}", f"{result['calibrated_ms']:.3f}", result["attempts"]))
    wall = [r["wall_median_ms"] for r in results]
    cpu = [r["median_ms"] for r in results]
    ratio = [r["reference_ratio"] for r in results]
    calibrated = [r["calibrated_ms"] for r in results]
    rows.append(("max/min", "", f"{spread(wall):.3f}", f"{spread(cpu):.3f}", f"{spread(ratio):.4f}",
                 f"{spread(calibrated):.4f}", ""))
    print_table(f"{args.arch} @ {args.resolution}, {args.backend}, 1 thread, {args.processes} processes",
                ["run", "start", "wall median ms", "CPU median ms", "ratio to ref", "calibrated ms", "attempts"], rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "spread_wall": spread(wall),
                                               "spread_cpu": spread(cpu), "spread_ratio": spread(ratio),
                                               "spread_calibrated": spread(calibrated)}, indent=2))


if __name__ == "__main__":
    main()
