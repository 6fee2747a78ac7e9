"""Search strategies on NAS-Bench-201, where every answer is known.

Protocol (the benchmark's own): strategies search on the 12-epoch CIFAR-10 *validation* accuracy;
what they found (the best trial by the search's reward) is reported by its 200-epoch *test*
accuracy, which no strategy sees. The budget counts distinct architectures evaluated. Each run
goes through the real search loop (`edgenas.search.run_search`, in-memory log) with the real
strategies and evaluator; budgets 50/100/150/200 are read from one 200-query run (anytime).

Tables printed:
1. accuracy objective: mean +- std test accuracy of the best-by-validation architecture.
2. MnasNet rewards with Pixel 3 latency at T = 5, 10, 20 ms (soft; hard with --hard): regret
   = best reward in the whole table minus the reward of what was found, both computed with the
   200-epoch test accuracy, in reward points (x100); and the hypervolume of the evaluated
   architectures' front (validation accuracy vs latency) as a share of the whole table's front,
   reference point (2T ms, 10 % accuracy = chance).
An anytime plot (PNG) of each strategy's curve is written next to --plot.

    .venv/bin/python benchmarks/nb201_strategies.py --seeds 20 --plot docs/bench/nb201_anytime.png
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

BUDGETS = (50, 100, 150, 200)
STRATEGY_NAMES = ("random", "evolution", "reinforce", "ppo")
TARGETS = (5.0, 10.0, 20.0)
PUBLISHED = {"random": 93.70, "reinforce": 93.85, "evolution": 93.92}  # NB201 paper, CIFAR-10 test
OPTIMUM = 94.37
CHANCE = 0.10


def _data_dir() -> Path:
    root = os.environ.get("EDGENAS_DATA_DIR")
    return Path(root) / "nb201" if root else Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201"


def run_one(job: tuple[str, int, str, float | None, int, dict]) -> dict:
    """One search; returns per-query arrays (test accuracy, val accuracy, latency, reward)."""
    import torch

    torch.set_num_threads(1)
    from edgenas.evaluators.nb201 import NB201Evaluator, load_tables
    from edgenas.search.loop import run_search
    from edgenas.search.objectives import make_objective
    from edgenas.spaces import get_space
    from edgenas.strategies import make_strategy

    strategy_name, seed, objective_name, target, budget, options = job
    tables = load_tables(_data_dir())
    space = get_space("nb201")
    evaluator = NB201Evaluator(tables, "cifar10", "pixel3")
    objective = make_objective(objective_name, target)
    strategy = make_strategy(strategy_name, space, seed, **options)
    start = time.perf_counter()
    outcome = run_search(space, strategy, evaluator, objective, budget, seed=seed)
    trials = sorted(outcome.trials, key=lambda t: t.id)
    return {
        "test": np.array([t.metrics["test_accuracy"] for t in trials]),
        "val": np.array([t.accuracy for t in trials]),
        "latency": np.array([t.latency_ms for t in trials]),
        "reward": np.array([t.reward for t in trials]),
        "seconds": time.perf_counter() - start,
        "asks": outcome.asks,
    }


def best_by_reward(run: dict, n: int) -> int:
    """Index of the best trial (by search reward) among the first n; the earliest on a tie."""
    rewards = run["reward"][:n]
    return int(np.argmax(rewards))


def anytime(run: dict, budget: int) -> np.ndarray:
    """Test accuracy (%) of the best-by-reward trial after each query; a run that stopped early
    (a converged controller) keeps its last answer."""
    rewards, test = run["reward"], run["test"]
    best = np.maximum.accumulate(rewards)
    index = np.array([int(np.argmax(rewards[: k + 1] >= best[k])) for k in range(len(rewards))])
    curve = 100 * test[index]
    if len(curve) < budget:
        curve = np.concatenate([curve, np.full(budget - len(curve), curve[-1])])
    return curve


def table_front_hv(val: np.ndarray, latency: np.ndarray, target: float) -> float:
    from edgenas.search.objectives import hypervolume_2d

    return hypervolume_2d(list(zip(latency, val)), 2 * target, CHANCE)


def mnas_test_reward(test: np.ndarray, latency: np.ndarray, target: float, alpha: float, beta: float) -> np.ndarray:
    lat = np.maximum(latency, 1e-6)
    w = np.where(lat <= target, alpha, beta)
    return test * (lat / target) ** w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--first-seed", type=int, default=1000,
        help="seeds first-seed.. (defaults were tuned on seeds 0-19; report on others)",
    )
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--strategies", default=",".join(STRATEGY_NAMES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-mnas", action="store_true", help="only the accuracy objective")
    parser.add_argument("--hard", action="store_true", help="also the hard MnasNet reward")
    parser.add_argument("--plot", default=None, help="write the anytime plot (PNG) here")
    args = parser.parse_args(argv)

    from edgenas.evaluators.nb201 import load_tables
    from edgenas.search.objectives import HARD_EXPONENTS, SOFT_EXPONENTS

    tables = load_tables(_data_dir())
    val = tables.val_acc["cifar10"] / 100
    test = tables.test_acc["cifar10"] / 100
    latency = tables.latency_ms["pixel3"]
    strategies = args.strategies.split(",")
    budgets = [b for b in BUDGETS if b <= args.budget] or [args.budget]

    objectives: list[tuple[str, float | None]] = [("accuracy", None)]
    if not args.no_mnas:
        objectives += [("mnas-soft", t) for t in TARGETS]
        if args.hard:
            objectives += [("mnas-hard", t) for t in TARGETS]
    jobs = [
        (s, seed, obj, target, args.budget, {})
        for obj, target in objectives
        for s in strategies
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs, chunksize=4))
    elapsed = time.perf_counter() - start
    runs: dict[tuple[str, float | None, str], list[dict]] = {}
    for job, result in zip(jobs, results):
        runs.setdefault((job[2], job[3], job[0]), []).append(result)

    print(f"NAS-Bench-201 CIFAR-10, {args.seeds} seeds ({args.first_seed}..), search on 12-epoch validation accuracy, "
          f"report 200-epoch test accuracy of the best-by-validation architecture")
    print(f"optimum {OPTIMUM}; published (NB201 paper): " + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items()))
    header = "| strategy | " + " | ".join(f"{b} queries" for b in budgets) + " | published | s/run |"
    print(header)
    print("|" + "---|" * (len(budgets) + 3))
    curves: dict[str, np.ndarray] = {}
    for s in strategies:
        group = runs[("accuracy", None, s)]
        curve = np.stack([anytime(r, args.budget) for r in group])
        curves[s] = curve
        cells = [f"{curve[:, b - 1].mean():.2f} +- {curve[:, b - 1].std():.2f}" for b in budgets]
        secs = np.mean([r["seconds"] for r in group])
        print(f"| {s} | " + " | ".join(cells) + f" | {PUBLISHED.get(s, '-')} | {secs:.2f} |")

    for name, exps in (("mnas-soft", SOFT_EXPONENTS), ("mnas-hard", HARD_EXPONENTS)):
        targets = [t for obj, t in objectives if obj == name]
        if not targets:
            continue
        print(f"\n{name} (alpha {exps[0]}, beta {exps[1]}), Pixel 3 latency: regret (test-accuracy reward "
              f"points, lower is better) / hypervolume share of the true front (val accuracy, ref 2T ms, 10 %), "
              f"at {budgets[-1]} queries (and {budgets[0]})")
        print("| strategy | " + " | ".join(f"T = {t:g} ms regret | T = {t:g} ms HV share" for t in targets) + " |")
        print("|" + "---|" * (1 + 2 * len(targets)))
        for s in strategies:
            cells = []
            for t in targets:
                test_reward = mnas_test_reward(test, latency, t, *exps)
                best_in_table = test_reward.max()
                true_hv = table_front_hv(val, latency, t)
                regrets, shares = {b: [] for b in budgets}, {b: [] for b in budgets}
                for r in runs[(name, t, s)]:
                    for b in budgets:
                        n = min(b, len(r["reward"]))
                        found = best_by_reward(r, n)
                        found_reward = r["test"][found] * (
                            (max(r["latency"][found], 1e-6) / t) ** (exps[0] if r["latency"][found] <= t else exps[1])
                        )
                        regrets[b].append(100 * (best_in_table - found_reward))
                        shares[b].append(table_front_hv(r["val"][:n], r["latency"][:n], t) / true_hv)
                lo, hi = budgets[0], budgets[-1]
                cells.append(f"{np.mean(regrets[hi]):.2f} +- {np.std(regrets[hi]):.2f} ({np.mean(regrets[lo]):.2f})")
                cells.append(f"{np.mean(shares[hi]):.3f} +- {np.std(shares[hi]):.3f} ({np.mean(shares[lo]):.3f})")
            print(f"| {s} | " + " | ".join(cells) + " |")

    print(f"\n{len(jobs)} searches in {elapsed:.0f} s with {args.workers} worker processes")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        x = np.arange(1, args.budget + 1)
        for s, curve in curves.items():
            mean, std = curve.mean(0), curve.std(0)
            ax.plot(x, mean, label=s)
            ax.fill_between(x, mean - std / np.sqrt(len(curve)), mean + std / np.sqrt(len(curve)), alpha=0.2)
        ax.axhline(OPTIMUM, color="k", linestyle="--", linewidth=0.8, label=f"optimum {OPTIMUM}")
        ax.set_ylim(92.5, 94.5)
        ax.set_xlabel("queries (distinct architectures evaluated)")
        ax.set_ylabel("CIFAR-10 test accuracy of best-by-val (%)")
        ax.set_title(f"NAS-Bench-201, mean +- s.e. over {args.seeds} seeds")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
