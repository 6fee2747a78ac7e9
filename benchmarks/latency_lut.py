"""LUT accuracy and cost: N random MnasNet-space networks at 224, onnxruntime, one thread.

Measures each network end to end (interleaved reference, calibrated figure), predicts it from the
per-layer LUT, and reports the share within +-5 % / +-10 %, RMSE and Kendall's tau; then times
1,000 predictions (the validated networks, cycled) against one fresh end-to-end measurement.

    .venv/bin/python benchmarks/latency_lut.py -n 100 --resolution 224 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from edgenas.cli.output import print_table
from edgenas.latency import make_latency_estimator
from edgenas.latency.protocol import Protocol
from edgenas.latency.settings import LatencySettings
from edgenas.spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cache", default=None, help="latency cache (default: ~/.cache/edgenas/latency.sqlite)")
    parser.add_argument("--lut-reference", choices=("network", "layer"), default="network")
    parser.add_argument("--json", default=None, help="also write the full report here")
    args = parser.parse_args()

    space = get_space("mnas", resolution=args.resolution)
    settings = LatencySettings(backend=args.backend, mode="lut", cache=args.cache, lut_reference=args.lut_reference,
                               protocol=replace(Protocol(), runs=args.runs))
    estimator = make_latency_estimator(space, settings)
    started = time.perf_counter()
    done = []
    report = estimator.validate(args.n, progress=lambda arch: done.append(arch) or print(
        f"[{len(done)}/{args.n}] measured {time.perf_counter() - started:.0f} s", flush=True))
    measured_costs = [p["measured_ms"] for p in report["pairs"]]

    # Cost of a measurement: one fresh end-to-end measurement (export + pinned subprocess + runs).
    arch = estimator.validation_sample(1, seed=99)[0]
    start = time.perf_counter()
    estimator.measure(arch, use_cache=False)
    measure_s = time.perf_counter() - start
    # 1,000 predictions: the validated architectures, cycled (all their layers are in the LUT, so
    # only prediction is timed, not the timing of new layers).
    archs = [report["pairs"][i % len(report["pairs"])]["arch"] for i in range(1000)]
    lut = estimator.lut
    start = time.perf_counter()
    for a in archs:
        lut.predict(a)
    predict_s = (time.perf_counter() - start) / len(archs)
    report.update(measure_one_s=measure_s, predict_one_s=predict_s, speedup=measure_s / predict_s,
                  mean_measured_ms=sum(measured_costs) / len(measured_costs))
    rows = [(report["n"], f"{100 * report['within_5pct']:.1f} %", f"{100 * report['within_10pct']:.1f} %",
             f"{report['rmse_ms']:.3f}", f"{report['kendall_tau']:.3f}", f"{report['max_abs_pct']:.1f} %",
             report["calibration_archs"], report["lut_entries"])]
    print_table(f"LUT vs end-to-end, mnas @ {args.resolution}, {args.backend}, 1 thread, "
                f"layers timed against the {args.lut_reference} reference",
                ["n", "within 5%", "within 10%", "RMSE ms", "Kendall tau", "max err", "calib. nets", "LUT entries"], rows)
    print_table("LUT cost", ["measure 1 net (s)", "predict 1 net (ms)", "speed-up"],
                [(f"{measure_s:.2f}", f"{1000 * predict_s:.3f}", f"{report['speedup']:,.0f}x")])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
