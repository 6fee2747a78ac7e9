"""What a weight-sharing search costs end to end: supernet training plus a 1,000-candidate search.

Issue 12's cost goal, as a user runs it: the two commands, one after the other, from an empty work
directory and an empty latency cache (so the LUT's layers are timed inside the search, as on a new
machine). The search's own time includes the LUT's layers, scoring every candidate, the strategy,
and measuring the final front end to end. Prints one table of wall seconds per stage.

    python benchmarks/oneshot_search_cost.py --dataset cifar10-jpeg --data-dir ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def timed(command: list[str], log: Path) -> float:
    """Run `edgenas COMMAND`, its output appended to `log`; wall seconds (exits on failure)."""
    started = time.perf_counter()
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "edgenas.cli.main", *command], stdout=out, stderr=out)
    if done.returncode != 0:
        sys.exit(f"edgenas {' '.join(command[:2])} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10-jpeg")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--space-preset", default="full")
    parser.add_argument("--supernet-epochs", type=int, default=1)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--strategy", default="ppo")
    parser.add_argument("--objective", default="mnas-abs")
    parser.add_argument("--target-ms", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/edgenas-oneshot-search-cost")
    args = parser.parse_args()

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "log.txt"
    data_dir = ["--data-dir", args.data_dir] if args.data_dir else []
    supernet_s = timed(["supernet", "train", "--space-preset", args.space_preset, "--dataset", args.dataset,
                        *data_dir, "--epochs", str(args.supernet_epochs), "--seed", str(args.seed),
                        "--out", str(work / "supernet"), "--quiet"], log)
    search_s = timed(["search", "--space", "mnas", "--evaluator", "oneshot", "--supernet", str(work / "supernet"),
                      *data_dir, "--strategy", args.strategy, "--objective", args.objective, "--target-ms",
                      str(args.target_ms), "--budget", str(args.budget), "--seed", str(args.seed),
                      "--latency-cache", str(work / "latency.sqlite"), "--out", str(work / "search"), "--quiet"], log)
    record = json.loads((work / "supernet" / "supernet.json").read_text())
    front = json.loads((work / "search" / "front.json").read_text())
    print(f"{args.dataset}, {args.space_preset} space, supernet {record['params']:,} parameters, "
          f"{args.supernet_epochs} epoch(s); {args.strategy} {args.objective} at T = {args.target_ms} ms")
    print("| stage | wall s |")
    print("|---|---|")
    print(f"| supernet training | {supernet_s:.0f} |")
    print(f"| search, {args.budget} candidates (LUT layers, scoring, final front measured) | {search_s:.0f} |")
    print(f"| **total** | **{supernet_s + search_s:.0f}** ({(supernet_s + search_s) / 60:.1f} min) |")
    measured = sorted(r["measured_ms"] for r in front if r.get("measured_ms") is not None)
    if measured:
        print(f"front: {len(front)} architectures, measured {measured[0]:.3f}-{measured[-1]:.3f} ms")


if __name__ == "__main__":
    main()
