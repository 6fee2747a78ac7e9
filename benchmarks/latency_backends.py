"""All installed local backends side by side on a MobileNetV2-like network at 224, one thread.

Each backend times the same network (its own export: ONNX, a whole pickled module, .tflite) in a
pinned subprocess, interleaved with its own MobileNetV2 reference; reported are the CPU-time
median, the wall-clock median and the calibrated figure, measured one after another in one run.

    .venv/bin/python benchmarks/latency_backends.py --arch mobilenetv2_100 --resolution 224
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from edgenas.cli.output import print_table
from edgenas.latency.backends import get_backend
from edgenas.latency.cache import LatencyCache
from edgenas.latency.estimator import measure_arch
from edgenas.latency.protocol import Measurer, Protocol
from edgenas.spaces.mobilenet import NetworkConfig
from edgenas.spaces.presets import PRESETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenetv2_100")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    arch = PRESETS.get(args.arch, args.arch)
    cache = LatencyCache(Path(tempfile.mkdtemp()) / "latency.sqlite")
    rows, results = [], {}
    for name in ("litert", "onnxruntime", "torch"):
        backend = get_backend(name)
        status = backend.status()
        if not status.usable:
            rows.append((name, "not usable: " + status.reason, "", "", ""))
            continue
        measurer = Measurer(backend, Protocol(runs=args.runs), cache)
        try:
            result = measure_arch(arch, measurer, cache, NetworkConfig(), args.resolution, use_cache=False)
        finally:
            measurer.close()
        results[name] = result.to_dict()
        rows.append((name, status.runtime, f"{result.median_ms:.2f}", f"{result.wall_median_ms:.2f}",
                     f"{result.calibrated_ms:.2f}"))
    print_table(f"{args.arch} @ {args.resolution}, batch 1, 1 thread",
                ["backend", "runtime", "CPU median ms", "wall median ms", "calibrated ms"], rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
