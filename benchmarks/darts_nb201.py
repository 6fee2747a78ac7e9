"""DARTS on NAS-Bench-201: does plain DARTS collapse, do the mitigations, and what an epoch costs.

Runs `edgenas.darts.search.Search` on the NB201 space for plain DARTS and each mitigation
(`--regularizers`), for each seed, and prints per epoch: the derived cell,
its skip-connection share, the dominant Hessian eigenvalue (validation loss w.r.t. alpha) and the
cell's 200-epoch CIFAR-10 test accuracy from the NB201 tables; then a table of first/last epoch
per run, the mean over seeds, and the means over seeds per window of epochs (a tenth of the
search each; the eigenvalue as the window's median, since one power iteration on 32 images is
noisy). Every search has its own run directory under `--out`, so a killed benchmark resumes where
it stopped (rerun the same command). `--jobs K` runs K searches at a time, each in its own process
with one thread (its log beside its run directory, `<run directory>.log`): on a 2-core machine three one-thread
searches finish sooner than three two-thread searches in a row (measured in
docs/bench/darts_nb201.md): the reduced supernet's small convolutions do not use two threads well.

Two protocols (every value can be overridden by its flag):

- `--protocol reduced` (CPU, sized to fit about an hour for 3 x 3 searches on 2 cores with
  `--jobs 3`): 1,280 CIFAR-10 training images (class-balanced from the first JPEG shard) split
  640 / 640 into the weights' and alpha's halves, batch 32, 50 epochs (20 steps each; 12 until
  2026-12-04, too short to show the collapse reliably: see
  docs/bench/darts_nb201.md), N = 1 cell per stage,
  C = 8 channels, first order (`--order 2`: second), weight SGD lr 0.025 cosine to 0.001 (the paper's), alpha's Adam lr
  scaled so that lr x steps equals the published protocol's (3e-4 x 50 x 390), eigenvalue by
  10 power steps on 32 fixed validation images;
- `--protocol full` (the published NB201 protocol, for a GPU): all 50,000 CIFAR-10 training
  images split 25,000 / 25,000, batch 64, 50 epochs, N = 5, C = 16, alpha lr 3e-4, 20 power steps.

`--cost-steps K` also times K search steps of each protocol's supernet in a fresh subprocess and
prints the time of one search epoch (K steps measured, scaled to the epoch's steps) and the
process's peak memory (resident set on CPU; `torch.cuda.max_memory_allocated` on a GPU).

    python benchmarks/darts_nb201.py --protocol reduced --seeds 0 1 2 --jobs 3 --out runs/bench_darts_nb201
    python benchmarks/darts_nb201.py --protocol full --device cuda --seeds 0 1 2 --out runs/nb201_full
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

PUBLISHED_ARCH_STEPS = 50 * (25_000 // 64)  # epochs x steps of the published protocol
PROTOCOLS = {
    "reduced": {"dataset": "cifar10-jpeg:1", "limit": 1280, "batch_size": 32, "epochs": 50,
                "cells_per_stage": 1, "channels": 8, "arch_lr": None, "hessian_iterations": 10,
                "hessian_images": 32, "order": 1},
    "full": {"dataset": "cifar10-jpeg", "limit": None, "batch_size": 64, "epochs": 50,
             "cells_per_stage": 5, "channels": 16, "arch_lr": 3e-4, "hessian_iterations": 20,
             "hessian_images": 64, "order": 1},
}


def settings(args: argparse.Namespace) -> dict:
    values = dict(PROTOCOLS[args.protocol])
    for key in values:
        given = getattr(args, key, None)
        if given is not None:
            values[key] = given
    if values["arch_lr"] is None:  # same alpha travel (lr x steps) as the published protocol
        images = values["limit"] or 50_000
        steps = values["epochs"] * ((images // 2) // values["batch_size"])
        values["arch_lr"] = 3e-4 * PUBLISHED_ARCH_STEPS / steps
    return values


def run_search(values: dict, regularizer: str, seed: int, out: Path, data, tables, device: str) -> list:
    from edgenas.darts.nb201_model import NB201SupernetConfig
    from edgenas.darts.regularizers import make_relaxation
    from edgenas.darts.search import Search, SearchConfig
    from edgenas.darts.step import SearchHyper

    name, _, listed = regularizer.partition(":")  # e.g. "beta:weight=5"
    options = {key: float(value) for key, _, value in (item.partition("=") for item in listed.split(",") if item)}
    config = SearchConfig(
        dataset=values["dataset"], epochs=values["epochs"], batch_size=values["batch_size"], seed=seed,
        supernet=NB201SupernetConfig(channels=values["channels"], cells_per_stage=values["cells_per_stage"],
                                     num_classes=data.num_classes, in_channels=data.shape[0]),
        hyper=SearchHyper(order=values["order"], arch_lr=values["arch_lr"]), limit=values["limit"],
        regularizer=make_relaxation(name, **options), hessian_iterations=values["hessian_iterations"],
    )
    search = Search(config, out / run_folder(regularizer, seed, values["order"]), dataset=data, device=device,
                    tables=tables)
    images = values["hessian_images"]
    search.hessian_batch = tuple(t[:images] for t in search.hessian_batch)

    def show(record) -> None:
        print(f"  {regularizer:6s} seed {seed} epoch {record.epoch:2d}  skip {record.skip_share:.2f}  "
              f"eig {record.eigenvalue:8.4f}  acc {record.test_accuracy:6.2f} %  #{record.index:<5d} "
              f"{record.seconds:5.1f}s  {record.genotype}", flush=True)

    search.run(on_epoch=show)
    return search.history


def run_jobs(args: argparse.Namespace, jobs: int, order: int) -> None:
    """Run each (regularizer, seed) search in a child process of one thread, `jobs` at a time.

    A child gets this command line with its own settings appended (argparse keeps the last value)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    pending = [(regularizer, seed) for seed in args.seeds for regularizer in args.regularizers]
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < jobs:
            regularizer, seed = pending.pop(0)
            name = run_folder(regularizer, seed, order)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            log_path = Path(args.out) / f"{name}.log"  # beside the run directory: the search owns that
            log = open(log_path, "a")
            command = [sys.executable, __file__, *sys.argv[1:], "--jobs", "1", "--cost-steps", "0",
                       "--seeds", str(seed), "--regularizers", regularizer]
            running.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
            log.close()
            print(f"started {regularizer} seed {seed} (log {log_path})", flush=True)
        time.sleep(2)
        for child in [c for c in running if c.poll() is not None]:
            running.remove(child)
            if child.returncode != 0:
                for other in running:
                    other.terminate()
                raise SystemExit(f"a search exited with status {child.returncode}: {' '.join(child.args)}")


def run_folder(regularizer: str, seed: int, order: int) -> str:
    """The search's run directory under --out: one per method, order and seed."""
    name = regularizer.replace(":", "-").replace("=", "").replace(",", "-")
    return f"{name}{'_order2' if order == 2 else ''}_seed{seed}"


def cost_child(values: dict, device: str, steps: int) -> None:
    """One search's steps on random data of CIFAR's shape; prints one JSON line."""
    import torch

    from edgenas.darts.nb201_model import NB201SearchNetwork, NB201SupernetConfig
    from edgenas.darts.step import SearchHyper, make_optimizers, search_step

    torch.manual_seed(0)
    model = NB201SearchNetwork(NB201SupernetConfig(channels=values["channels"],
                                                   cells_per_stage=values["cells_per_stage"])).to(device)
    optimizer, architect = make_optimizers(model, SearchHyper(arch_lr=values["arch_lr"]))
    b = values["batch_size"]
    batch = (torch.randn(b, 3, 32, 32, device=device), torch.randint(0, 10, (b,), device=device))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    search_step(model, optimizer, architect, batch, batch, 0.025, 5.0)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        search_step(model, optimizer, architect, batch, batch, 0.025, 5.0)
    if device == "cuda":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - started) / steps
    images = values["limit"] or 50_000
    epoch_steps = (images // 2) // b
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"per_step_s": per_step, "epoch_steps": epoch_steps, "epoch_s": per_step * epoch_steps,
                      "peak_mb": peak, "rss_before_mb": before / 1024, "threads": torch.get_num_threads()}))


def cost(protocol: str, device: str, steps: int) -> dict:
    command = [sys.executable, __file__, "--protocol", protocol, "--device", device, "--cost-child", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ.copy())
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="reduced")
    parser.add_argument("--regularizers", nargs="+", default=["none", "beta", "drnas"],
                        help="names, each with its settings if not the defaults: beta:weight=5")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="runs/bench_darts_nb201")
    parser.add_argument("--data-dir", default=None, help="the cifar10-jpeg shards (default ../shared/data/cifar10)")
    parser.add_argument("--tables", default=None, help="the NB201 tables (default ../shared/data/nb201)")
    parser.add_argument("--device", default="cpu")
    for key in ("epochs", "limit", "batch_size", "cells_per_stage", "channels", "hessian_iterations", "hessian_images",
                "order"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=None)
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--arch-lr", type=float, default=None)
    parser.add_argument("--cost-steps", type=int, default=0, help="also time K steps of each protocol's supernet")
    parser.add_argument("--cost-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=1, help="searches at a time, one thread each when more than 1")
    args = parser.parse_args()
    values = settings(args)
    if args.cost_child:
        cost_child(values, args.device, args.cost_child)
        return 0

    from edgenas.data import load_dataset
    from edgenas.evaluators.nb201 import default_data_dir, load_tables

    data_root = Path(args.data_dir) if args.data_dir else Path("..") / "shared" / "data" / "cifar10"
    tables = load_tables(args.tables or default_data_dir())
    data = load_dataset(values["dataset"], "train", data_root)
    import torch

    threads = 1 if args.jobs > 1 else torch.get_num_threads()  # a search's path depends on it
    print(f"protocol {args.protocol}: {json.dumps(values)}; {len(data)} images loaded, "
          f"regularizers {args.regularizers}, seeds {args.seeds}, {threads} thread(s) per search", flush=True)
    out = Path(args.out)
    if args.jobs > 1:
        run_jobs(args, args.jobs, values["order"])  # then the loop below only reads the finished runs back
    results: dict[str, list] = {}
    for seed in args.seeds:
        for regularizer in args.regularizers:
            results.setdefault(regularizer, []).append(run_search(values, regularizer, seed, out, data, tables, args.device))

    print("\n| regularizer | seed | skip share first -> last | eigenvalue first -> last | test acc % first -> last | last cell |")
    print("|---|---|---|---|---|---|")
    for regularizer, runs in results.items():
        for seed, history in zip(args.seeds, runs):
            a, b = history[0], history[-1]
            print(f"| {regularizer} | {seed} | {a.skip_share:.2f} -> {b.skip_share:.2f} | {a.eigenvalue:.4f} -> "
                  f"{b.eigenvalue:.4f} | {a.test_accuracy:.2f} -> {b.test_accuracy:.2f} | `{b.genotype}` |")
    print("\n| regularizer | runs | mean last test acc % | mean last skip share | mean eigenvalue first -> last |")
    print("|---|---|---|---|---|")
    for regularizer, runs in results.items():
        last = [h[-1] for h in runs]
        first = [h[0] for h in runs]
        print(f"| {regularizer} | {len(runs)} | {statistics.mean(r.test_accuracy for r in last):.2f} | "
              f"{statistics.mean(r.skip_share for r in last):.2f} | "
              f"{statistics.mean(r.eigenvalue for r in first):.4f} -> {statistics.mean(r.eigenvalue for r in last):.4f} |")
    epochs = min(len(h) for runs in results.values() for h in runs)
    width = max(1, -(-epochs // 10))
    windows = [range(start, min(start + width, epochs)) for start in range(0, epochs, width)]
    print(f"\nmeans over seeds per window of {width} epoch(s): skip share / eigenvalue (median) / test acc %")
    print("| regularizer | " + " | ".join(f"{w[0] + 1}-{w[-1] + 1}" for w in windows) + " |")
    print("|---|" + "---|" * len(windows))
    for regularizer, runs in results.items():
        cells = [f"{statistics.mean(h[e].skip_share for h in runs for e in w):.2f} / "
                 f"{statistics.median(h[e].eigenvalue for h in runs for e in w):.3f} / "
                 f"{statistics.mean(h[e].test_accuracy for h in runs for e in w):.1f}" for w in windows]
        print(f"| {regularizer} | " + " | ".join(cells) + " |")
    seconds = [r.seconds for runs in results.values() for h in runs for r in h]
    print(f"\nsearch epoch (this protocol, measured, incl. validation and eigenvalue): "
          f"median {statistics.median(seconds):.1f} s over {len(seconds)} epochs")
    if args.cost_steps:
        for protocol in PROTOCOLS:
            c = cost(protocol, args.device, args.cost_steps)
            print(f"cost {protocol}: {c['per_step_s']:.3f} s/step x {c['epoch_steps']} steps = {c['epoch_s']:.0f} s "
                  f"per search epoch (steps only; {args.cost_steps} measured), peak memory {c['peak_mb']:.0f} MB "
                  f"({'GPU allocated' if args.device == 'cuda' else 'process RSS'}), {c['threads']} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
