"""Specialisation: is the architecture that is best for one runtime best for another?

Protocol (issue 12): one trained supernet; the same one-shot search (strategy, budget, seed,
objective and target T) run once per latency backend, each on that backend's own per-layer LUT,
with no retraining in between (`edgenas search --evaluator oneshot --supernet DIR`, exactly as a
user runs it). Then every architecture on either search's Pareto front is measured end to end on
every backend, and scored with the search's objective on each backend's measured latency. The
table answers: which architecture each search picked (its best reward), what it costs on each
runtime, and whether the pick of one runtime's search is also the best of the measured union on
the other runtime (and how much reward is lost if it is not).

Two searches differ in what they happen to find as much as in the runtime they searched for (the
six seeds in docs/bench/supernet.md: the better search's pick won on both runtimes), so the
script also compares the runtimes on one shared pool (`--pool-top K`): every architecture either
search evaluated (one-shot accuracy from the same supernet, so the same number in both), ranked
by each runtime's LUT reward; the top K of each ranking are measured end to end on every runtime,
and the table says whether each runtime's best of that pool is the other's, and what taking the
other runtime's best costs. Only the latency differs between the two rankings.

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
    parser.add_argument("--pool-top", type=int, default=5,
                        help="the pool comparison: measure each runtime's top K of the shared pool (0: skip)")
    parser.add_argument("--fresh", action="store_true",
                        help="measure every architecture end to end now, not from earlier measurements in the cache")
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
    pool: dict[str, float] = {}  # every architecture either search evaluated -> its one-shot accuracy
    for backend in backends:
        run_dir = work / f"search-{backend}-{args.objective}-{args.target_ms:g}-{args.budget}-{args.seed}"
        edgenas("search", "--space", "mnas", "--evaluator", "oneshot", "--supernet", str(supernet_dir),
                "--strategy", args.strategy, "--objective", args.objective, "--target-ms", f"{args.target_ms:g}",
                "--latency-backend", backend, "--latency-threads", "1", "--latency-mode", "lut",
                "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(run_dir), "--quiet", *cache)
        with Store.open_existing(run_dir) as store:
            fronts[backend] = store.pareto()
            best = store.best()
            for trial in store.trials("ok"):
                pool.setdefault(trial.arch, float(trial.accuracy))
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
    objective = make_objective(args.objective, args.target_ms)

    def latencies(backend: str, mode: str, archs: list[str]) -> dict[str, float]:
        protocol = Protocol() if args.runs is None else replace(Protocol(), runs=args.runs)
        estimator = make_latency_estimator(space, LatencySettings(backend=backend, mode=mode, protocol=protocol,
                                                                  cache=args.cache))
        def figure(arch: str) -> float:
            blocks = space.decode(arch)
            result = estimator.measure(blocks, use_cache=False) if mode == "measure" and args.fresh \
                else estimator.latency(blocks)
            return float(getattr(result, "latency_ms", result.median_ms))

        try:
            return {arch: figure(arch) for arch in archs}
        finally:
            estimator.close()

    # The shared pool, ranked by each runtime's LUT reward; its top K of each ranking join the
    # architectures measured end to end.
    top: dict[str, list[str]] = {}
    if args.pool_top > 0:
        for backend in backends:
            predicted = latencies(backend, "lut", sorted(pool))
            scored = {a: objective.reward(TrialResult(accuracy=pool[a], latency_ms=predicted[a])) for a in pool}
            top[backend] = sorted(pool, key=lambda a: scored[a], reverse=True)[:args.pool_top]
    # `union` (the fronts and the picks) stays what the first tables compare; the shortlist is
    # measured beside it.
    shortlist = sorted({a for ranked in top.values() for a in ranked})
    accuracy.update({a: pool[a] for a in shortlist})
    measured = {backend: latencies(backend, "measure", sorted(set(union) | set(shortlist))) for backend in backends}

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
    pool_best: dict[str, str] = {}
    if top:
        pool_best = {b: max(shortlist, key=lambda a: reward(a, b)) for b in backends}
        print(f"\nthe shared pool: {len(pool)} architectures evaluated by the searches; each runtime's top "
              f"{args.pool_top} by LUT reward, {len(shortlist)} in all, measured end to end on every runtime")
        print("| measured on | best of the pool's shortlist | one-shot acc | its reward | "
              "the other runtimes' best: reward here | same architecture |")
        print("|---|---|---|---|---|---|")
        for backend in backends:
            mine = pool_best[backend]
            others = [pool_best[b] for b in backends if b != backend]
            print(f"| {backend} | `{mine}` | {accuracy[mine]:.3f} | {reward(mine, backend):.4f} | "
                  + ", ".join(f"{reward(o, backend):.4f} ({reward(o, backend) - reward(mine, backend):+.4f})"
                              for o in others)
                  + f" | {'yes' if all(o == mine for o in others) else 'no'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"picks": picks, "accuracy": accuracy, "measured": measured,
                                               "best_measured": best_measured, "pool_size": len(pool),
                                               "pool_top": top, "pool_best": pool_best}, indent=1))


if __name__ == "__main__":
    main()
