"""Specialisation: is the architecture that is best for one runtime best for another?

Protocol (issue 12): one trained supernet; the same one-shot search (strategy, budget, seed,
objective and target T) run once per latency backend, each on that backend's own per-layer LUT,
with no retraining in between (`edgenas search --evaluator oneshot --supernet DIR`, exactly as a
user runs it). Then every architecture on either search's Pareto front is measured end to end on
every backend, and scored with the search's objective on each backend's measured latency. The
table answers: which architecture each search picked (its best reward), what it costs on each
runtime, and whether the pick of one runtime's search is also the best of the measured union on
the other runtime (and how much reward is lost if it is not).

    python benchmarks/specialisation.py --supernet runs/demo/supernet --target-ms 0.2 --budget 300

Without `--supernet` it trains the demo's supernet (digits, demo preset, 8 epochs) into WORK.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see edgenas.util.threads


def edgenas(*argv: str) -> None:
    command = [str(Path(sys.executable).with_name("edgenas")), *argv]
    print("running: edgenas " + " ".join(argv), flush=True)
    if subprocess.run(command).returncode != 0:
        sys.exit(f"edgenas {argv[0]} failed (its message is above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--supernet", default=None, help="a trained supernet directory (default: train the demo's)")
    parser.add_argument("--backends", default="onnxruntime,litert")
    parser.add_argument("--objective", default="mnas-abs", help="T must matter: mnas-abs or mnas-hard")
    parser.add_argument("--target-ms", type=float, required=True)
    parser.add_argument("--strategy", default="ppo")
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=None, help="timed runs per end-to-end measurement")
    parser.add_argument("--cache", default=None, help="latency cache (default: the per-user one)")
    parser.add_argument("--work", default="/tmp/edgenas-specialisation")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()

    from dataclasses import replace

    from scipy.stats import kendalltau

    from edgenas.evaluators.base import TrialResult
    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.protocol import Protocol
    from edgenas.latency.settings import LatencySettings
    from edgenas.search.objectives import make_objective
    from edgenas.search.store import Store
    from edgenas.supernet.training import finished, load_supernet

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    supernet_dir = Path(args.supernet) if args.supernet else work / "supernet"
    if not finished(supernet_dir):
        edgenas("supernet", "train", "--space-preset", "demo", "--dataset", "digits", "--epochs", "8",
                "--seed", str(args.seed), "--out", str(supernet_dir), "--quiet")
    backends = args.backends.split(",")
    cache = ["--latency-cache", args.cache] if args.cache else []
    fronts: dict[str, list] = {}
    picks: dict[str, str] = {}
    pick_accuracy: dict[str, float] = {}
    for backend in backends:
        run_dir = work / f"search-{backend}-{args.objective}-{args.target_ms:g}-{args.budget}-{args.seed}"
        edgenas("search", "--space", "mnas", "--evaluator", "oneshot", "--supernet", str(supernet_dir),
                "--strategy", args.strategy, "--objective", args.objective, "--target-ms", f"{args.target_ms:g}",
                "--latency-backend", backend, "--latency-threads", "1", "--latency-mode", "lut",
                "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(run_dir), "--quiet", *cache)
        with Store.open_existing(run_dir) as store:
            fronts[backend] = store.pareto()
            best = store.best()
        assert best is not None
        picks[backend] = best.arch
        pick_accuracy[best.arch] = float(best.accuracy)

    supernet, _ = load_supernet(supernet_dir)
    space = supernet.space
    accuracy = {t.arch: float(t.accuracy) for front in fronts.values() for t in front}
    # A pick need not be on its front: with mnas-abs a slower, less accurate network nearer T can
    # out-reward one that dominates it.
    accuracy.update(pick_accuracy)
    union = sorted(accuracy)
    measured: dict[str, dict[str, float]] = {}
    for backend in backends:
        protocol = Protocol() if args.runs is None else replace(Protocol(), runs=args.runs)
        estimator = make_latency_estimator(space, LatencySettings(backend=backend, mode="measure", protocol=protocol,
                                                                  cache=args.cache))
        measured[backend] = {}
        for arch in union:
            result = estimator.latency(space.decode(arch))
            measured[backend][arch] = float(getattr(result, "latency_ms", result.median_ms))
        estimator.close()
    objective = make_objective(args.objective, args.target_ms)

    def reward(arch: str, backend: str) -> float:
        result = TrialResult(accuracy=accuracy[arch], latency_ms=measured[backend][arch])
        value = objective.reward(result)
        assert value is not None
        return value

    best_measured = {b: max(union, key=lambda a: reward(a, b)) for b in backends}
    print(f"\nsupernet {supernet_dir}; {args.strategy}, {args.objective}, T = {args.target_ms:g} ms, budget "
          f"{args.budget}, seed {args.seed}; {len(union)} architectures on the fronts, each measured on every backend")
    print("| searched on (LUT) | pick | one-shot acc | " + " | ".join(f"{b} ms" for b in backends) + " | "
          + " | ".join(f"reward on {b}" for b in backends) + " |")
    print("|---|---|---|" + "---|" * (2 * len(backends)))
    for backend in backends:
        arch = picks[backend]
        print(f"| {backend} | `{arch}` | {accuracy[arch]:.3f} | "
              + " | ".join(f"{measured[b][arch]:.3f}" for b in backends) + " | "
              + " | ".join(f"{reward(arch, b):.4f}" for b in backends) + " |")
    print("\n| measured on | best of the union | its reward | the other search's pick: reward | same architecture |")
    print("|---|---|---|---|---|")
    for backend in backends:
        others = [picks[b] for b in backends if b != backend]
        print(f"| {backend} | `{best_measured[backend]}` | {reward(best_measured[backend], backend):.4f} | "
              + ", ".join(f"{reward(o, backend):.4f}" for o in others) + " | "
              + ("yes" if all(o == best_measured[backend] for o in others) and picks[backend] == best_measured[backend]
                 else "no") + " |")
    if len(backends) == 2:
        a, b = backends
        tau = kendalltau([measured[a][x] for x in union], [measured[b][x] for x in union])[0]
        ratio = [measured[b][x] / measured[a][x] for x in union]
        print(f"\nKendall tau of measured latency, {a} vs {b}, over the {len(union)} front architectures: {tau:.3f}; "
              f"{b}/{a} latency ratio {min(ratio):.2f}-{max(ratio):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"picks": picks, "accuracy": accuracy, "measured": measured,
                                               "best_measured": best_measured}, indent=1))


if __name__ == "__main__":
    main()
