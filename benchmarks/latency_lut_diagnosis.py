"""Where the LUT's error comes from: K independent builds from empty caches, every piece kept.

Each build is what a user's first `lut build` + `lut validate` does, from an empty cache of its own:
the reference baseline, every layer of `--calibration` + `-n` random MnasNet-space networks timed
in dealt passes, and every one of those networks measured end to end. Nothing is fitted here; the
JSON keeps each network's layers (key, input shape, the entry's per-pass timings) and each
measurement, so that `latency_lut_analysis.py` can answer, offline and on the same numbers:

- how far end-to-end measurements of the same network repeat between builds (the floor of any
  predictor's error),
- how far a network's layer sum repeats between builds (layer-timing noise),
- which correction forms predict held-out networks best, fitted on the calibration networks only,
- with `--rounds R`, how far a network's measurements minutes apart within one build repeat, and
  what the LUT's held-out accuracy is against one measurement and against the median of R.

    .venv/bin/python benchmarks/latency_lut_diagnosis.py --resolution 224 --builds 3 --json out.json
    .venv/bin/python benchmarks/latency_lut_diagnosis.py --resolution 32 --classes 10 --calibration 24 --json out32.json
    .venv/bin/python benchmarks/latency_lut_diagnosis.py --resolution 32 --classes 10 --calibration 24 --builds 1 \
        --rounds 3 --json rounds32.json
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from edgenas.latency import make_latency_estimator
from edgenas.latency.settings import DEFAULT_LAYER_PASSES, LatencySettings
from edgenas.spaces import get_space


def _entries(cache: Path) -> dict[str, dict]:
    """Every stored layer entry: 'key@shape' -> its latency and per-pass timings."""
    db = sqlite3.connect(cache)
    try:
        rows = db.execute("SELECT layer, input_shape, latency_ms, data FROM lut").fetchall()
    finally:
        db.close()
    return {f"{layer}@{shape}": {"ms": ms, "passes_ms": json.loads(data).get("passes_ms")}
            for layer, shape, ms, data in rows}


def _record(m) -> dict:
    return {"ms": m.latency_ms, "ratio": m.reference_ratio, "noisy": m.noisy, "reference_ms": m.reference_median_ms,
            "baseline_ms": m.reference_baseline_ms, "raw_ms": m.median_ms, "at": time.time()}


def _measure_all(estimator, archs: list[str], use_cache: bool, log, label: str,
                 other=None) -> tuple[list[dict], list[float], list[dict]]:
    """Every network of `archs` measured end to end, one after another; with `other` (an estimator
    of another end-to-end reference setting) each is measured that way too, right after."""
    measured, seconds, also = [], [], []
    for index, arch in enumerate(archs):
        start = time.perf_counter()
        measured.append(_record(estimator.measure(arch, use_cache=use_cache)))
        seconds.append(time.perf_counter() - start)
        if other is not None:
            also.append(_record(other.measure(arch, use_cache=use_cache)))
        if (index + 1) % 10 == 0:
            log(f"  {label}measured {index + 1}/{len(archs)}")
    return measured, seconds, also


def one_build(space, archs: list[str], backend: str, cache: Path, log, rounds: int = 1,
              also_reference: str | None = None, keep_converted: str | None = None,
              layer_passes: int = DEFAULT_LAYER_PASSES) -> dict:
    """A build from an empty cache: layers of all `archs` (dealt), then each network measured; with
    `rounds` > 1 every network is measured again, round after round over all of them, so that a
    network's repeats lie minutes apart (what a measurement's phase does is what they show). With
    `also_reference` ('none', the one setting run so far), each measurement is followed by one with
    nothing interleaved (the candidate's own time), so the two are compared in the same minutes. With
    `keep_converted`, files converted by an earlier build are timed again instead of converted
    again (the latency cache is still empty: every timing is fresh), and the networks are converted
    ahead of their measurements, several at a time where conversion is slow. `layer_passes` is
    the setting of that name (each layer's entry the mean of that many passes)."""
    estimator = make_latency_estimator(space, LatencySettings(backend=backend, mode="lut", cache=str(cache),
                                                              keep_converted=keep_converted,
                                                              layer_passes=layer_passes))
    other = None if also_reference is None else make_latency_estimator(space, LatencySettings(
        backend=backend, mode="lut", cache=str(cache), reference=None, keep_converted=keep_converted))
    try:
        lut = estimator.make_lut()
        started = time.perf_counter()
        timed = lut.fill_dealt(archs, progress=lambda k: log(f"  layers +{k}"))
        layer_s = time.perf_counter() - started
        entries = _entries(cache)
        started = time.perf_counter()
        converted = estimator.convert_ahead(archs)
        convert_s = time.perf_counter() - started
        if converted:
            log(f"  {converted} networks converted ahead in {convert_s:.0f} s")
        measured, measure_s, also = _measure_all(estimator, archs, True, log, "", other)
        repeats = [_measure_all(estimator, archs, False, log, f"round {r + 2}: ", other)
                   for r in range(rounds - 1)]
        return {"layers_timed": timed, "layer_seconds": layer_s, "measure_seconds": measure_s,
                "networks_converted_ahead": converted, "convert_seconds": convert_s,
                "files_reused": estimator.measurer.converted_reused,
                "device": estimator.measurer.status.device, "runtime": estimator.measurer.status.runtime,
                "entries": entries, "measured": measured, "rounds": [measured, *(r[0] for r in repeats)],
                "also_reference": also_reference, "also_rounds": [also, *(r[2] for r in repeats)] if other else [],
                "networks": [[f"{s.key}@{s.shape_key}" for s in lut.layers(arch)] for arch in archs]}
    finally:
        estimator.close()
        if other is not None:
            other.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="held-out networks (never fitted on)")
    parser.add_argument("--calibration", type=int, default=48, help="networks a correction may be fitted on")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000, help="10: the CIFAR layout the searches use")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="end-to-end measurements of each network per build, in rounds over all of them")
    parser.add_argument("--also-reference", default=None, choices=("none",),
                        help="measure each network a second time, right after, with this end-to-end reference "
                             "(none: the network's own time, nothing interleaved)")
    parser.add_argument("--keep-converted", default=None, metavar="DIR",
                        help="keep converted files here and reuse them in later builds (timings stay fresh); "
                             "what makes three LiteRT builds affordable")
    parser.add_argument("--layer-passes", type=int, default=DEFAULT_LAYER_PASSES,
                        help=f"passes each layer is timed in, its entry their mean (default {DEFAULT_LAYER_PASSES})")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    space = get_space("mnas", resolution=args.resolution, num_classes=args.classes)
    rng = random.Random(f"diagnosis-{args.seed}")
    archs: list[str] = []
    while len(archs) < args.calibration + args.n:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {text}", flush=True)

    report = {"resolution": args.resolution, "classes": args.classes, "backend": args.backend, "calibration": args.calibration,
              "layer_passes": args.layer_passes, "archs": archs, "builds": [], "started": time.time()}
    with tempfile.TemporaryDirectory() as scratch:
        for build in range(args.builds):
            log(f"build {build + 1}/{args.builds} from an empty cache")
            report["builds"].append(one_build(space, archs, args.backend, Path(scratch) / f"cache{build}.sqlite", log,
                                               args.rounds, args.also_reference, args.keep_converted,
                                               args.layer_passes))
            Path(args.json).write_text(json.dumps(report))  # each finished build is kept
    log("done")


if __name__ == "__main__":
    main()
