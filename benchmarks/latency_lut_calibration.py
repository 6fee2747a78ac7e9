"""How many networks the LUT's correction needs: refit it on random draws of measured networks.

Reads what `benchmarks/latency_lut.py --cache C --json R` left behind (the LUT in C, the calibration
and validation networks with their end-to-end latencies in C and R), then, for each calibration size
k and each correction form, draws k of those networks at random many times, fits on them and scores
the rest: the share within +-10 % (mean, worst and best draw) and within +-5 % (mean). Nothing is
measured again; it shows how much the draw of calibration networks decides the LUT's accuracy, and
which correction form generalises (the forms share the draws).

    .venv/bin/python benchmarks/latency_lut_calibration.py --cache C --report R [--sizes 12,24,40]
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np

from edgenas.cli.output import print_table
from edgenas.latency import make_latency_estimator
from edgenas.latency.settings import LatencySettings
from edgenas.spaces import get_space

# Columns of LatencyLUT.features ([layer sum, layers, input activations]) each form fits, plus b.
FORMS = {
    "a*sum + b": [0],
    "a*sum + d*act + b (now)": [0, 2],
    "a*sum + c*layers + d*act + b (v1)": [0, 1, 2],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="the latency cache latency_lut.py used")
    parser.add_argument("--report", required=True, help="the --json report latency_lut.py wrote")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--sizes", default="8,12,16,24,40", help="calibration sizes to try")
    parser.add_argument("--draws", type=int, default=100)
    args = parser.parse_args()

    report = json.loads(open(args.report).read())
    estimator = make_latency_estimator(get_space("mnas", resolution=args.resolution),
                                       LatencySettings(backend=args.backend, mode="lut", cache=args.cache))
    correction = estimator.lut.correction
    archs = list(correction["archs"]) + [pair["arch"] for pair in report["pairs"]]
    measured = np.array(list(correction["measured_ms"]) + [pair["measured_ms"] for pair in report["pairs"]])
    features = np.array([estimator.lut.features(arch) for arch in archs])
    rng = random.Random(0)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        draws = [rng.sample(range(len(archs)), len(archs)) for _ in range(args.draws)]  # same for each form
        for form, columns in FORMS.items():
            within10, within5 = [], []
            for order in draws:
                fit_on, judged = order[:size], order[size:]
                coef = _fit(features[fit_on][:, columns], measured[fit_on])
                predicted = features[judged][:, columns] @ coef[:-1] + coef[-1]
                errors = np.abs(predicted / measured[judged] - 1)
                within10.append(float(np.mean(errors <= 0.10)))
                within5.append(float(np.mean(errors <= 0.05)))
            rows.append([size, form, f"{100 * np.mean(within10):.1f} %", f"{100 * min(within10):.1f} %",
                         f"{100 * max(within10):.1f} %", f"{100 * np.mean(within5):.1f} %"])
    print_table(f"correction refitted on {args.draws} random draws of {len(archs)} measured networks "
                f"(judged on the rest)", ["networks", "form", "within 10 % mean", "worst draw", "best draw",
                                          "within 5 % mean"], rows)


def _fit(features: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Least squares of measured ~ features . w + b; returns [w..., b]."""
    design = np.hstack([features, np.ones((len(measured), 1))])
    return np.linalg.lstsq(design, measured, rcond=None)[0]


if __name__ == "__main__":
    main()
