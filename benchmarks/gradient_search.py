"""Latency-aware gradient search (issue 13): does one setting hit three targets, and what it costs.

For three targets T spread over the space's latency range (at 20 %, 50 % and 80 % of the way from
the LUT's fastest to its slowest network), the same `edgenas supernet search` command is run; the
derived network is measured end to end on the same backend, and the table says whether it lies
within +-10 % of T. Then one supernet training of the same epochs, images and batch size
(`edgenas supernet train`, uniform paths) and the training of the largest single network of the
space (`edgenas train`, same batch size) are run for the cost comparison: wall time of the search
against the supernet training (ratio), and peak resident memory of each process (ru_maxrss of the
command's own process; latency is measured in subprocesses of its own, not counted).

Each command runs in a fresh process, one at a time. Prints one table and writes the rows as JSON
to --out/results.json.

    .venv/bin/python benchmarks/gradient_search.py --out runs/bench_gradient

`--penalty mult --latency-weight W --no-cost` runs the same three searches with the
multiplicative loss instead (issue 13 asks for the loss to be chosen by measurement; the
comparison is in docs/bench/gradient_search.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RUNNER = """
import json, resource, sys
from edgenas.cli.main import main
code = main(sys.argv[1:])
print("MAXRSS " + json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), file=sys.stderr)
sys.exit(code)
"""


def edgenas(argv: list[str]) -> tuple[dict | None, float, int]:
    """Run `edgenas ARGV` in a fresh process: (its --json output or None, wall s, peak RSS in MiB)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"edgenas {' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    rss = [line for line in done.stderr.splitlines() if line.startswith("MAXRSS ")]
    output = json.loads(done.stdout) if done.stdout.strip().startswith("{") else None
    return output, wall, int(json.loads(rss[-1].split(" ", 1)[1])) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_gradient")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latency-cache", default=None)
    parser.add_argument("--latency-backend", default="onnxruntime", help="the LUT's and the measurements' backend")
    parser.add_argument("--fractions", default="0.2,0.5,0.8", help="targets, as fractions of the latency range")
    parser.add_argument("--seed", type=int, default=0, help="the searches' and the supernet training's seed")
    parser.add_argument("--penalty", default=None, help="abs or mult (default: the command's)")
    parser.add_argument("--latency-weight", type=float, default=None, help="the penalty's weight (default: the command's)")
    parser.add_argument("--no-cost", action="store_true", help="only the searches, not the two cost comparisons")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ["--dataset", args.dataset, "--subset", str(args.subset)] + (
        ["--data-dir", args.data_dir] if args.data_dir else [])
    latency = ["--latency-backend", args.latency_backend] + (["--latency-cache", args.latency_cache] if args.latency_cache else [])
    common = ["supernet", "search", "--space-preset", "demo", *data, "--epochs", str(args.epochs),
              "--warmup-epochs", str(args.warmup_epochs), "--batch-size", str(args.batch_size), "--seed", str(args.seed), *latency, "--json"]
    if args.penalty:
        common += ["--penalty", args.penalty]
    if args.latency_weight is not None:
        common += ["--latency-weight", str(args.latency_weight)]

    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.settings import LatencySettings
    from edgenas.supernet.expected_latency import ExpectedLatency
    from edgenas.supernet.gradient_search import SearchSettings
    from edgenas.supernet.sampling import PathSampler

    settings = SearchSettings(target_ms=1e-9, dataset=args.dataset, data_dir=args.data_dir, subset=args.subset,
                              latency=LatencySettings(backend=args.latency_backend, mode="lut", cache=args.latency_cache))
    # The range (and the LUT, built once here if the cache lacks it) before any search.
    from edgenas.data import load_dataset
    from edgenas.supernet.training import space_for

    images = load_dataset(args.dataset, "train", args.data_dir)
    space = space_for(settings.choices(), images.shape, images.num_classes)
    estimator = make_latency_estimator(space, settings.latency)
    low, high = ExpectedLatency(space, estimator.lut).latency_range()
    estimator.close()
    print(f"latency range of the demo space on {args.latency_backend} (LUT): {low:.4f} to {high:.4f} ms", file=sys.stderr)
    rows = []
    for fraction in (float(f) for f in args.fractions.split(",")):
        target = low + fraction * (high - low)
        run_dir = out / f"search_{fraction:g}"
        result, wall, rss = edgenas([*common, "--target-ms", f"{target:.5f}", "--out", str(run_dir), "--force"])
        rows.append({"job": f"search T={target:.4f}", "target_ms": target, "arch": result["arch"],
                     "expected_ms": result["expected_ms"], "predicted_ms": result["predicted_ms"],
                     "measured_ms": result["measured_ms"], "error": result["measured_error"],
                     "within_10pct": abs(result["measured_error"]) <= 0.10, "wall_s": wall,
                     "most_probable_arch": result["most_probable_arch"],
                     "most_probable_measured_ms": result.get("most_probable_measured_ms", result["measured_ms"]),
                     "search_s": result["seconds_this_run"], "maxrss_mib": rss})
        print(json.dumps(rows[-1]), file=sys.stderr)
    if not args.no_cost:
        supernet, wall, rss = edgenas(["supernet", "train", "--space-preset", "demo", *data, "--val-fraction", "0.5",
                                       "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                                       "--train-device", "cpu", "--seed", str(args.seed), "--out", str(out / "supernet"), "--force",
                                       "--json"])
        rows.append({"job": "supernet train (same epochs)", "wall_s": wall, "search_s": supernet["stats"]["seconds"],
                     "maxrss_mib": rss})
        largest = space.arch_from_indices(PathSampler(space).largest())
        _, wall, rss = edgenas(["train", largest, "--space-preset", "demo", *data, "--epochs", "1",
                                "--batch-size", str(args.batch_size), "--train-device", "cpu",
                                "--out", str(out / "largest"), "--force", "--json"])
        rows.append({"job": "train largest network (1 epoch)", "arch": largest, "wall_s": wall, "maxrss_mib": rss})
    (out / "results.json").write_text(json.dumps({"range_ms": [low, high], "rows": rows}, indent=2) + "\n")

    from edgenas.cli.output import print_table

    searches = [r for r in rows if r["job"].startswith("search")]
    print_table(f"gradient search: three targets, one setting (demo space, {args.latency_backend}, 1 thread)",
                ["T ms", "E[LAT] ms", "LUT ms", "measured ms", "vs T", "within 10 %", "mode measured ms", "mode vs T",
                 "search s", "peak RSS MiB", "derived"],
                [(f"{r['target_ms']:.4f}", f"{r['expected_ms']:.4f}", f"{r['predicted_ms']:.4f}",
                  f"{r['measured_ms']:.4f}", f"{r['error']:+.1%}", "yes" if r["within_10pct"] else "no",
                  f"{r['most_probable_measured_ms']:.4f}", f"{r['most_probable_measured_ms'] / r['target_ms'] - 1:+.1%}",
                  f"{r['search_s']:.0f}", str(r["maxrss_mib"]), r["arch"]) for r in searches])
    print("mode = each decision's most probable choice (--derive most-probable), measured in the same run")
    if args.no_cost:
        return
    mean_search = sum(r["search_s"] for r in searches) / len(searches)
    print(f"wall time: search {mean_search:.0f} s (mean of {len(searches)}) / supernet training "
          f"{rows[-2]['search_s']:.0f} s = {mean_search / rows[-2]['search_s']:.2f}x")
    peak = max(r["maxrss_mib"] for r in searches)
    print(f"peak RSS: search {peak} MiB, supernet training {rows[-2]['maxrss_mib']} MiB, largest network "
          f"training {rows[-1]['maxrss_mib']} MiB ({peak / rows[-1]['maxrss_mib']:.2f}x)")


if __name__ == "__main__":
    main()
