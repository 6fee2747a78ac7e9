"""How LUT layers should be timed: alone (back to back) or in passes (as a network runs them).

For N random MnasNet-space networks, in one run and on the same pinned core:
  passes  one measuring process times the network's layers in passes, with the whole network as
          the pass's reference (`TimingJob(chain=True)`): every pass runs the network, then each
          layer once; the network's median is its end-to-end latency at that same moment;
  alone   a second process times each layer back to back with itself (`chain=False`).
A LUT entry is the median over every network that contains the layer. The correction
`a * sum + c * layers + d * activations + b` (and the simpler `a * sum + b`) is fitted on the first
`--calibrate` networks and judged on the rest: shares within +-5 % / +-10 %, Kendall's tau.
No reference model and no cache: this isolates how layers are timed from drift and calibration.

    .venv/bin/python benchmarks/latency_lut_timing.py -n 40 --resolution 224
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from edgenas.cli.output import print_table
from edgenas.export import export_onnx
from edgenas.latency.backends import get_backend
from edgenas.latency.backends.base import TimingItem, TimingJob
from edgenas.latency.layers import network_layers
from edgenas.latency.lut import accuracy_report
from edgenas.spaces import get_space
from edgenas.spaces.mobilenet import build_network


def time_network(backend, net: TimingItem, layers: list[TimingItem], runs: int) -> dict:
    """Both timings of one network's layers, and the network itself, on the same core."""
    passes = {r.index: r for r in backend.run(TimingJob(layers, net, warmup=5, runs=runs, core=-1, chain=True))}
    alone = {r.index: r for r in backend.run(TimingJob(layers, None, warmup=5, runs=runs, core=-1))}
    for raw in [*passes.values(), *alone.values()]:
        if raw.error:
            raise SystemExit(f"timing failed: {raw.error}")
    return {
        "net_ms": statistics.median(passes[0].reference_cpu_ms),
        "passes_ms": [statistics.median(passes[i].candidate_cpu_ms) for i in range(len(layers))],
        "alone_ms": [statistics.median(alone[i].candidate_cpu_ms) for i in range(len(layers))],
    }


def judge(records: list[dict], mode: str, calibrate: int) -> list[tuple]:
    table: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for key, value in zip(record["keys"], record[f"{mode}_ms"]):
            table[key].append(value)
    lut = {key: statistics.median(values) for key, values in table.items()}
    features = np.array([[sum(lut[k] for k in r["keys"]), len(r["keys"]), r["activations"] / 1e6, 1.0]
                         for r in records])
    measured = np.array([r["net_ms"] for r in records])
    rows = []
    for name, columns in (("a*sum+b", [0, 3]), ("a*sum+c*layers+d*act+b", [0, 1, 2, 3])):
        design = features[:, columns]
        coef, *_ = np.linalg.lstsq(design[:calibrate], measured[:calibrate], rcond=None)
        report = accuracy_report(measured[calibrate:], design[calibrate:] @ coef)
        rows.append((mode, name, report["n"], f"{100 * report['within_5pct']:.0f} %",
                     f"{100 * report['within_10pct']:.0f} %", f"{report['max_abs_pct']:.1f} %",
                     f"{report['kendall_tau']:.3f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--calibrate", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = get_space("mnas", resolution=args.resolution)
    network = space.config.network
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.n)]
    backend = get_backend("onnxruntime")
    scratch = Path(tempfile.mkdtemp(prefix="edgenas-lut-timing-"))
    files: dict[str, Path] = {}
    records = []
    started = time.perf_counter()
    for index, arch in enumerate(archs):
        shape = (1, network.in_channels, args.resolution, args.resolution)
        net = TimingItem(export_onnx(build_network(arch, network, args.resolution).eval(), shape,
                                     scratch / f"net{index}.onnx"), shape)
        specs = network_layers(arch, network, args.resolution)
        keys = [f"{spec.key}@{spec.shape_key}" for spec in specs]
        for key, spec in zip(keys, specs):
            if key not in files:
                files[key] = export_onnx(spec.build(network).eval(), spec.input_shape, scratch / f"layer{len(files)}.onnx")
        layers = [TimingItem(files[key], spec.input_shape) for key, spec in zip(keys, specs)]
        record = time_network(backend, net, layers, args.runs)
        record.update(arch=arch, keys=keys, activations=sum(math.prod(s.input_shape) for s in specs))
        records.append(record)
        print(f"[{index + 1}/{args.n}] {arch[:60]}...  net {record['net_ms']:.2f} ms, "
              f"sum in passes {sum(record['passes_ms']):.2f}, alone {sum(record['alone_ms']):.2f}", flush=True)
    rows = judge(records, "passes", args.calibrate) + judge(records, "alone", args.calibrate)
    print_table(f"LUT from layers timed alone vs in passes: {args.n} networks at {args.resolution}, onnxruntime, "
                f"1 thread, CPU time; correction fitted on {args.calibrate}, judged on the rest "
                f"({len(files)} distinct layers, {time.perf_counter() - started:.0f} s)",
                ["layers timed", "correction", "n", "within 5%", "within 10%", "max err", "Kendall tau"], rows)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
