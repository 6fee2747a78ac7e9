"""Do the strategy defaults chosen on NAS-Bench-201 serve a MnasNet-space search? (issue 11)

The defaults of PPO, REINFORCE, evolution and local search were tuned on NB201 tables
(docs/bench/nb201.md).
This runs the same strategies, at their library defaults, on the MnasNet space through the
one-shot evaluator of a trained supernet (`--supernet`, from `edgenas supernet train`: accuracy
with inherited weights) or, without `--supernet`, the proxy-training evaluator (each candidate
trained briefly, as `edgenas search --space mnas` does; `--search-flags` are that command's flags
for the data, space and proxy recipe); latency from the LUT of a latency cache, the MnasNet reward
(`--objective`, `--target-ms`), `--budget` distinct architectures per search, `--seeds` seeds per
strategy. Every search is the real loop (`run_search`, in-memory log) with the real strategies and
evaluator.

No optimum is known in this space, so the tables report each strategy's best reward after 50, 100,
... queries (mean +- std over seeds) and its regret against the best reward any search of the run
found, beside random search's. A candidate's score does not depend on when it is evaluated (fixed
BatchNorm batches and images, the LUT), so an architecture met by several searches is scored once
and its result reused (the evaluator's own result, kept in a dict), which is what makes many seeds
affordable.

    python benchmarks/mnas_strategies.py --supernet SUPERNET_DIR --latency-cache latency.sqlite \\
        --target-ms 0.3 --budget 300 --seeds 5
    python benchmarks/mnas_strategies.py --latency-cache latency.sqlite --target-ms 0.2 --budget 100 \\
        --seeds 3 --strategies random,ppo --search-flags "--space-preset demo --dataset digits"
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

BUDGETS = (50, 100, 200, 300, 500, 1000)


class SharedScores:
    """The one-shot evaluator with its results kept per architecture, shared by every search."""

    def __init__(self, evaluator: Any) -> None:
        self.evaluator = evaluator
        self.results: dict[str, Any] = {}
        self.seconds = 0.0  # spent scoring (each architecture once)

    def evaluate(self, arch: str) -> Any:
        if arch not in self.results:
            start = time.perf_counter()
            self.results[arch] = self.evaluator.evaluate(arch)
            self.seconds += time.perf_counter() - start
        return self.results[arch]


def proxy_evaluator(args: argparse.Namespace) -> tuple[Any, Any]:
    """The proxy-training evaluator and its space, built by `edgenas search`'s own set-up from its
    flags, so the benchmark scores candidates exactly as a search does."""
    import shlex

    from edgenas.cli.main import build_parser
    from edgenas.evaluators.registry import get_evaluator_kind
    from edgenas.search.executors import InProcessExecutor

    flags = ["search", "--space", "mnas", "--strategy", "random", "--budget", "1", "--out", "unused",
             "--latency-mode", "lut", "--latency-cache", args.latency_cache, "--latency-backend", args.latency_backend,
             *(["--data-dir", args.data_dir] if args.data_dir else []), *shlex.split(args.search_flags)]
    setup = get_evaluator_kind("mnas").setup(build_parser().parse_args(flags))
    return setup.make_evaluator(InProcessExecutor()), setup.space


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supernet", default=None,
                        help="a directory of edgenas supernet train (one-shot scores); without it, proxy training")
    parser.add_argument("--search-flags", default="--space-preset demo --dataset digits",
                        help="proxy training: the flags of `edgenas search --space mnas` that set the data, "
                             "space and proxy recipe (default: %(default)s)")
    parser.add_argument("--latency-cache", required=True, help="the latency cache holding the LUT")
    parser.add_argument("--latency-backend", default="onnxruntime")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--objective", default="mnas-soft")
    parser.add_argument("--target-ms", type=float, required=True)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--strategies", default="random,evolution,local,reinforce,ppo",
                        help="comma-separated; NAME:KEY=VALUE[:KEY=VALUE...] runs a strategy at other options "
                             "(e.g. ppo:elites=0:target_kl=0.03)")
    args = parser.parse_args()

    from edgenas.cli.search import parse_options
    from edgenas.evaluators.oneshot import OneShotEvaluator
    from edgenas.latency.estimator import make_latency_estimator
    from edgenas.latency.settings import LatencySettings
    from edgenas.search.loop import run_search
    from edgenas.search.objectives import make_objective
    from edgenas.strategies import make_strategy

    if args.supernet:
        evaluator = OneShotEvaluator(args.supernet, data_dir=args.data_dir)
        evaluator.prepare()
        space = evaluator.supernet.space
        estimator = make_latency_estimator(space, LatencySettings(backend=args.latency_backend, mode="lut",
                                                                  cache=args.latency_cache))
        evaluator.latency_source = estimator
        scored_by = f"one-shot accuracy of {args.supernet}"
    else:
        evaluator, space = proxy_evaluator(args)
        estimator = evaluator.latency_source
        scored_by = f"proxy-trained accuracy ({args.search_flags})"
    scores = SharedScores(evaluator)
    objective = make_objective(args.objective, args.target_ms)
    strategies = args.strategies.split(",")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    curves: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, list[float]] = {}
    under_t: dict[str, list[float]] = {}
    failed = 0
    for seed in seeds:
        for name in strategies:
            start = time.perf_counter()
            scored_before = scores.seconds
            strategy_name, *options = name.split(":")
            strategy = make_strategy(strategy_name, space, seed, **parse_options(options))
            outcome = run_search(space, strategy, scores, objective, args.budget, seed=seed)
            rewards = [t.reward if t.reward is not None else -np.inf for t in outcome.trials]
            curves.setdefault(name, []).append(np.maximum.accumulate(np.array(rewards, dtype=float)))
            # the strategy's own time: the wall time less the scoring done in this search
            seconds.setdefault(name, []).append(time.perf_counter() - start - (scores.seconds - scored_before))
            ok = [t for t in outcome.trials if t.status == "ok"]
            under_t.setdefault(name, []).append(float(np.mean([t.latency_ms <= args.target_ms for t in ok])))
            failed += outcome.failed
            print(f"  {name:10s} seed {seed}: best reward {curves[name][-1][-1]:.4f}, {len(outcome.trials)} trials, "
                  f"{outcome.asks} proposals, {len(scores.results)} architectures scored so far", flush=True)
    estimator.close()

    budgets = [b for b in BUDGETS if b <= args.budget]
    if args.budget not in budgets:
        budgets.append(args.budget)
    best = max(float(c[-1]) for runs in curves.values() for c in runs)
    print(f"\nMnasNet space, {scored_by}, {args.latency_backend} LUT latency, "
          f"{args.objective} T = {args.target_ms} ms; {args.budget} distinct architectures per search, seeds "
          f"{seeds.start}..{seeds.stop - 1}; {len(scores.results)} architectures scored in {scores.seconds:.0f} s "
          f"({scores.seconds / max(1, len(scores.results)):.2f} s each), {failed} failed trials")
    print("\nBest reward so far (x100, mean +- std over seeds)")
    print("| strategy | " + " | ".join(f"{b} queries" for b in budgets) + " | share of trials under T | "
          "strategy s/search |")
    print("|" + "---|" * (len(budgets) + 3))
    for name, runs in curves.items():
        cells = [f"{100 * np.mean([r[b - 1] for r in runs]):.2f} +- {100 * np.std([r[b - 1] for r in runs]):.2f}"
                 for b in budgets]
        print(f"| {name} | " + " | ".join(cells) + f" | {statistics.mean(under_t[name]):.2f} | "
              f"{statistics.mean(seconds[name]):.1f} |")
    print(f"\nRegret at {args.budget} queries against the best reward any search found ({100 * best:.2f}), x100; "
          "in brackets over random search's mean")
    print("| strategy | regret mean +- std | worst seed | vs random |")
    print("|---|---|---|---|")
    random_mean = np.mean([best - r[-1] for r in curves["random"]]) if "random" in curves else np.nan
    for name, runs in curves.items():
        regret = np.array([best - r[-1] for r in runs])
        print(f"| {name} | {100 * regret.mean():.2f} +- {100 * regret.std():.2f} | {100 * regret.max():.2f} | "
              f"{regret.mean() / random_mean:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
