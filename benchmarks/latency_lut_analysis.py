"""Offline analysis of `latency_lut_diagnosis.py`'s builds: where the LUT's error comes from.

Prints, from the same numbers:
1. repeatability of end-to-end measurements between builds (the floor of any predictor),
2. repeatability of a network's layer sum between builds, and of a layer between its two passes;
   with more passes per layer (`--layer-passes`), the LUT built from each layer's first k passes
   (and their median) judged on the same end-to-end measurements,
3. correction forms fitted on the calibration networks of one build and judged on its held-out
   networks (each build alone, as a user's build is), and across builds,
4. what the current form's residuals correlate with (features of the networks),
5. for builds measured in `--rounds`: how far a network's measurements minutes apart repeat, and
   today's form fitted and judged on one round against the median of all rounds; likewise for
   the measurements with another end-to-end reference (`--also-reference`).

    .venv/bin/python benchmarks/latency_lut_analysis.py out.json [--markdown]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
from collections.abc import Callable

import numpy as np
from scipy.stats import kendalltau, spearmanr

from edgenas.cli.output import print_table
from edgenas.latency.lut import accuracy_report
from edgenas.spaces.blockstrings import decode_block


def layer_features(name: str) -> dict[str, float]:
    """What a layer is, from its 'key@shape' name: kind, SE, identity skip, input values."""
    key, shape = name.split("@")
    dims = [int(d) for d in shape.split("x")]
    values = math.prod(dims) / 1e6
    block = key.split("|")[0]
    out = {"values": values, "se": 0.0, "skip": 0.0, "ds": 0.0, "ir": 0.0, "cn": 0.0, "edge": 0.0}
    if block.split("_")[0] in ("stem", "head", "pool"):
        out["edge"] = 1.0
        return out
    args = decode_block(block)
    out[args.block_type if args.block_type in ("ds", "ir", "cn") else "ir"] = 1.0
    out["se"] = float(args.se_ratio > 0)
    out["skip"] = float(args.skip == "identity")
    return out


class Build:
    """One build's networks: measured ms, layer sums and per-group sums from its own entries."""

    GROUPS = ("edge", "ds", "cn", "ir_plain", "ir_se", "skip_add")

    def __init__(self, data: dict, entries_from: dict | None = None) -> None:
        entries = (entries_from or data)["entries"]
        self.measured = np.array([m["ms"] for m in data["measured"]])
        self.networks = data["networks"]
        self.total = np.array([sum(entries[n]["ms"] for n in net) for net in self.networks])
        feats = [[layer_features(n) for n in net] for net in self.networks]
        self.activations = np.array([sum(f["values"] for f in fs) for fs in feats])
        self.layers = np.array([len(net) for net in self.networks], dtype=float)
        self.se_count = np.array([sum(f["se"] for f in fs) for fs in feats])
        self.skip_count = np.array([sum(f["skip"] for f in fs) for fs in feats])
        groups = []
        for net, fs in zip(self.networks, feats):
            sums = dict.fromkeys(self.GROUPS, 0.0)
            for name, f in zip(net, fs):
                ms = entries[name]["ms"]
                if f["edge"]:
                    sums["edge"] += ms
                elif f["ds"]:
                    sums["ds"] += ms
                elif f["cn"]:
                    sums["cn"] += ms
                else:
                    sums["ir_se" if f["se"] else "ir_plain"] += ms
                if f["skip"]:
                    sums["skip_add"] += ms
            groups.append([sums[g] for g in self.GROUPS])
        self.groups = np.array(groups)


FORMS: dict[str, Callable[[Build], np.ndarray]] = {
    "a*sum + b": lambda b: np.column_stack([b.total]),
    "a*sum + d*act + b (today)": lambda b: np.column_stack([b.total, b.activations]),
    "a*sum + d*act + se + skip + b": lambda b: np.column_stack([b.total, b.activations, b.se_count, b.skip_count]),
    "per-group sums + d*act + b": lambda b: np.column_stack([b.groups, b.activations]),
    "per-group sums + d*act + se + skip + b": lambda b: np.column_stack([b.groups, b.activations, b.se_count,
                                                                         b.skip_count]),
}


def fit_predict(form: Callable[[Build], np.ndarray], fit: Build, fit_rows, judge: Build, judge_rows,
                relative: bool = True) -> np.ndarray:
    """Least squares on `fit_rows` of `fit` (relative error weighting if `relative`), predictions
    for `judge_rows` of `judge`."""
    x = np.column_stack([form(fit), np.ones(len(fit.measured))])[fit_rows]
    y = fit.measured[fit_rows]
    w = 1 / y if relative else np.ones_like(y)
    coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    xj = np.column_stack([form(judge), np.ones(len(judge.measured))])[judge_rows]
    return xj @ coef


def rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a / b - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json")
    args = parser.parse_args()
    report = json.loads(open(args.json).read())
    raw = report["builds"]
    builds = [Build(b) for b in raw]
    n_cal = report["calibration"]
    n = len(report["archs"])
    cal, held = np.arange(n_cal), np.arange(n_cal, n)
    title = f"@{report['resolution']} {report['backend']}, {raw[0]['device']}, {len(builds)} builds"

    rows = []
    ratios = [np.array([m["ratio"] for m in b["measured"]]) for b in raw]
    for i, j in itertools.combinations(range(len(builds)), 2):
        d = rel(builds[j].measured, builds[i].measured)
        q = rel(ratios[j], ratios[i])
        s = rel(builds[j].total, builds[i].total)
        rows.append((f"{i + 1} vs {j + 1}", f"{100 * d.mean():+.2f} %", f"{100 * d.std():.2f} %",
                     f"{100 * np.abs(d).max():.1f} %", f"{100 * np.median(q):+.2f} %", f"{100 * q.std():.2f} %",
                     f"{100 * np.mean(np.abs(q) <= 0.05):.0f} %",
                     f"{100 * s.mean():+.2f} %", f"{100 * s.std():.2f} %", f"{100 * np.abs(s).max():.1f} %"))
    print_table(f"1-2. Repeatability between builds {title}",
                ["builds", "end-to-end ms: mean", "sd", "max", "ratio to reference: median", "sd", "within 5 %",
                 "layer sum: mean", "sd", "max"], rows)
    rows = [(index + 1, f"{np.median(builds[index].measured / ratios[index]):.3f}",
             sum(bool(m["noisy"]) for m in b["measured"]),
             f"{np.percentile([m['reference_ms'] for m in b['measured']], 10):.3f}" if "reference_ms" in
             b["measured"][0] else "")
            for index, b in enumerate(raw)]
    print_table("1b. Each build's reference baseline (ms = ratio x baseline)",
                ["build", "baseline ms", "noisy measurements", "reference p10 inside measurements"], rows)

    rows = []
    for index, b in enumerate(raw):
        passes = [e["passes_ms"] for e in b["entries"].values() if e.get("passes_ms") and len(e["passes_ms"]) > 1]
        d = np.array([p[1] / p[0] - 1 for p in passes])
        rows.append((index + 1, len(b["entries"]), f"{100 * d.std():.1f} %", f"{100 * np.median(np.abs(d)):.1f} %",
                     f"{b['layer_seconds']:.0f} s", f"{np.mean(b['measure_seconds']):.2f} s"))
    print_table("2b. A layer's two passes within a build", ["build", "entries", "sd pass2/pass1", "median |diff|",
                                                            "layer timing", "per network measured"], rows)

    passes_table(raw, cal, held, FORMS["a*sum + d*act + b (today)"])

    baselines = [float(np.median(b.measured / r)) for b, r in zip(builds, ratios)]
    for relative in (False, True):
        rows = []
        for name, form in FORMS.items():
            for fit_n in sorted({min(24, n_cal), n_cal}):
                reports = [accuracy_report(b.measured[held], fit_predict(form, b, cal[:fit_n], b, held, relative))
                           for b in builds]
                pairs = [(i, j) for i in range(len(builds)) for j in range(len(builds)) if i != j]
                cross = [accuracy_report(builds[j].measured[held],
                                         fit_predict(form, builds[i], cal[:fit_n], builds[i], held, relative))
                         for i, j in pairs]
                # the same in units of the reference: build i's prediction / its baseline x build j's
                scaled = [accuracy_report(builds[j].measured[held], baselines[j] / baselines[i] *
                                          fit_predict(form, builds[i], cal[:fit_n], builds[i], held, relative))
                          for i, j in pairs]
                rows.append((name, fit_n,
                             " / ".join(f"{100 * r['within_10pct']:.0f}" for r in reports),
                             " / ".join(f"{100 * r['within_5pct']:.0f}" for r in reports),
                             " / ".join(f"{r['kendall_tau']:.3f}" for r in reports),
                             " / ".join(f"{r['max_abs_pct']:.1f}" for r in reports),
                             f"{100 * np.mean([r['within_10pct'] for r in cross]):.0f}",
                             f"{100 * np.mean([r['within_10pct'] for r in scaled]):.0f}"))
        print_table(f"3. Correction forms ({'relative' if relative else 'absolute'} least squares), "
                    f"held-out {len(held)} networks {title}",
                    ["form", "fit on", "within 10 % per build", "within 5 %", "tau", "max err %",
                     "other builds' networks: within 10 %", "same, in reference units"], rows)

    rows = []
    form = FORMS["a*sum + d*act + b (today)"]
    for index, b in enumerate(builds):
        r = rel(fit_predict(form, b, cal[:24], b, held, False), b.measured[held])
        features = {"measured ms": b.measured[held], "activations": b.activations[held], "layers": b.layers[held],
                    "SE layers": b.se_count[held], "identity skips": b.skip_count[held],
                    "SE share of sum": b.groups[held, 4] / b.total[held],
                    "order measured": np.arange(len(held))}
        for feature, values in features.items():
            rho = spearmanr(values, r).statistic
            rows.append((index + 1, feature, f"{rho:+.2f}"))
        rows.append((index + 1, "residual mean / sd", f"{100 * r.mean():+.2f} % / {100 * r.std():.2f} %"))
    print_table("4. Today's form (24 networks): Spearman rho of held-out relative error with", ["build", "feature",
                                                                                                 "rho"], rows)
    tau = [kendalltau(b.measured[held], b.total[held]).statistic for b in builds]
    print("Kendall tau of the raw layer sum with measured latency: " + " / ".join(f"{t:.3f}" for t in tau))
    rounds_table(raw, builds, cal, held, form)


def passes_table(raw: list[dict], cal: np.ndarray, held: np.ndarray, form) -> None:
    """Section 2c: what more timing passes per layer buy, on one build's own numbers. The LUT whose
    entries are the mean of each layer's first k passes (and, from 3 passes, their median), today's
    form fitted on 24 calibration networks and judged on the held-out ones against the same
    end-to-end measurements, so that only the number of passes differs between the rows."""
    passes = min(len(e.get("passes_ms") or [0]) for b in raw for e in b["entries"].values())
    if passes < 3:
        return
    entry_sets = {f"mean of first {k}": lambda p, k=k: float(np.mean(p[:k])) for k in range(1, passes + 1)}
    entry_sets[f"median of {passes}"] = lambda p: float(np.median(p))
    rows = []
    for label, value in entry_sets.items():
        reports, taus = [], []
        for data in raw:
            entries = {name: {**e, "ms": value(e["passes_ms"])} for name, e in data["entries"].items()}
            build = Build(data, {"entries": entries})
            reports.append(accuracy_report(build.measured[held], fit_predict(form, build, cal[:24], build, held)))
            taus.append(kendalltau(build.measured[held], build.total[held]).statistic)
        rows.append((label, " / ".join(f"{100 * r['within_10pct']:.0f}" for r in reports),
                     " / ".join(f"{100 * r['within_5pct']:.0f}" for r in reports),
                     " / ".join(f"{r['kendall_tau']:.3f}" for r in reports),
                     " / ".join(f"{r['max_abs_pct']:.1f}" for r in reports), " / ".join(f"{t:.3f}" for t in taus)))
    print_table(f"2c. Layer entries from fewer passes, today's form fitted on 24, judged on {len(held)} held out "
                "(per build)", ["entries", "within 10 %", "within 5 %", "tau", "max err %", "raw layer sum: tau"], rows)


def rounds_table(raw: list[dict], builds: list[Build], cal: np.ndarray, held: np.ndarray, form) -> None:
    """Section 5: each build's rounds of end-to-end measurements (minutes apart, same process
    protocol) against each other, and the LUT judged against one round or the rounds' median; the
    same for the measurements with another end-to-end reference (`--also-reference`), taken in the
    same minutes."""
    for index, (data, build) in enumerate(zip(raw, builds)):
        rounds = data.get("rounds") or []
        settings = [("reference: network", rounds, "ms")]
        if rounds and rounds[0][0].get("raw_ms") is not None:  # the candidate's own median inside those
            settings.append(("the same measurements, candidate's own time", rounds, "raw_ms"))
        if data.get("also_rounds"):
            settings.append((f"reference: {data['also_reference']}", data["also_rounds"], "ms"))
        if len(settings) == 1 and len(rounds) < 2:
            continue
        for setting, rounds, field in settings:
            ms = np.array([[m[field] for m in r] for r in rounds])  # rounds x networks
            median = np.median(ms, axis=0)
            truths = {f"round {r + 1}": ms[r] for r in range(len(rounds))}
            if len(rounds) > 1:
                pairs = [(f"{i + 1} vs {j + 1}", rel(ms[j], ms[i]))
                         for i, j in itertools.combinations(range(len(rounds)), 2)]
                pairs += [(f"{r + 1} vs median", rel(ms[r], median)) for r in range(len(rounds))]
                rows = [(label, f"{100 * d.mean():+.2f} %", f"{100 * d.std():.2f} %",
                         f"{100 * np.mean(np.abs(d) <= 0.05):.0f} %", f"{100 * np.abs(d).max():.1f} %")
                        for label, d in pairs]
                print_table(f"5a. Build {index + 1}, {setting}: end-to-end ms between rounds of measuring",
                            ["rounds", "mean", "sd", "within 5 %", "max"], rows)
                truths[f"median of {len(rounds)}"] = median
            rows = []
            for fit_label, fit_ms in truths.items():
                fit = copy.copy(build)
                fit.measured = fit_ms
                predicted = fit_predict(form, fit, cal[:24], fit, held)
                for judge_label, judge_ms in truths.items():
                    r = accuracy_report(judge_ms[held], predicted)
                    rows.append((fit_label, judge_label, f"{100 * r['within_10pct']:.0f}",
                                 f"{100 * r['within_5pct']:.0f}", f"{r['kendall_tau']:.3f}", f"{r['max_abs_pct']:.1f}"))
            print_table(f"5b. Build {index + 1}, {setting}: today's form fitted on 24 calibration networks, judged "
                        f"on {len(held)} held out", ["fitted on", "judged against", "within 10 %", "within 5 %", "tau",
                                                      "max err %"], rows)

if __name__ == "__main__":
    main()
