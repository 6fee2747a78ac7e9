"""A real CIFAR-10 MnasNet search on a CPU, and how its front compares with hand-made presets.

Runs `edgenas search --space mnas` (PPO, soft reward, single-thread ONNX Runtime latency at 32x32)
on the CIFAR-10 JPEG shards in ../shared/data/cifar10, with a short proxy training per candidate;
then proxy-trains MobileNetV2-0.35-like and MnasNet-A1-0.5-like networks (CIFAR layout: stride-1
stem, 32x32 input) with exactly the same evaluator and measures their latency with the same
protocol and cache, and prints the front beside them. Resumable: rerun with the same --out.

    .venv/bin/python benchmarks/cifar_search.py --budget 30 --out runs/cifar_search --json /tmp/cifar.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from edgenas.blocks import make_divisible
from edgenas.cli.main import build_parser
from edgenas.search.store import Store
from edgenas.spaces.blockstrings import decode_arch, encode_arch
from edgenas.spaces.presets import PRESETS


def scaled(preset: str, width: float) -> str:
    """A preset with every stage's channels scaled by `width` (rounded to multiples of 8), with the
    CIFAR layout's stride 1 in the second stage (as the mnas space does below 64 px)."""
    blocks = decode_arch(PRESETS[preset])
    return encode_arch([
        replace(block, out_channels=make_divisible(block.out_channels * width, 8), stride=1 if i == 1 else block.stride)
        for i, block in enumerate(blocks)
    ])


BASELINES = {
    "MobileNetV2-0.35-like": scaled("mobilenetv2_100", 0.35),
    "MnasNet-A1-0.5-like": scaled("mnasnet_a1", 0.5),
}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--shards", type=int, default=2, help="CIFAR-10 train shards (2,500 images each)")
    parser.add_argument("--subset", type=int, default=5000, help="images for proxy train + validation")
    parser.add_argument("--steps", type=int, default=60, help="proxy SGD steps of 64 images per candidate")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--preset", default="demo", help="mnas space preset searched")
    parser.add_argument("--target-ms", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="default $EDGENAS_DATA_DIR/cifar10 or ../shared/data/cifar10")
    parser.add_argument("--latency-cache", default=None)
    parser.add_argument("--out", default="runs/cifar_search")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    argv = ["search", "--space", "mnas", "--space-preset", args.preset, "--dataset", f"cifar10-jpeg:{args.shards}",
            "--strategy", "ppo", "--objective", "mnas-soft", "--target-ms", str(args.target_ms),
            "--proxy-subset", str(args.subset), "--proxy-steps", str(args.steps), "--proxy-lr", str(args.lr),
            "--budget", str(args.budget), "--seed", str(args.seed), "--out", args.out]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if args.latency_cache:
        argv += ["--latency-cache", args.latency_cache]
    print("edgenas " + " ".join(argv), file=sys.stderr)
    search_args = build_parser().parse_args(argv)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    if search_args.handler(search_args):
        return 1
    search_wall, search_cpu = time.perf_counter() - started, cpu_seconds() - cpu_started

    # The presets, trained and measured the same way (same evaluator settings, protocol, cache).
    from edgenas.evaluators.mnas import setup
    from edgenas.latency.estimator import measure_arch
    from edgenas.search.executors import InProcessExecutor

    _space, _config, make_evaluator, _front = setup(search_args)
    evaluator = make_evaluator(InProcessExecutor())
    estimator = evaluator.latency_source
    baselines = []
    for name, arch in BASELINES.items():
        t0 = time.perf_counter()
        result = evaluator.evaluate(arch)
        if not result.ok:
            print(f"{name}: failed: {result.error}", file=sys.stderr)
            continue
        measured = measure_arch(arch, estimator.measurer, estimator.cache, estimator.network, estimator.resolution)
        baselines.append({"name": name, "arch": arch, "accuracy": result.accuracy, "latency_ms": measured.latency_ms,
                          "params": result.metrics["params"], "macs": result.metrics["macs"],
                          "seconds": time.perf_counter() - t0})

    with Store.open_existing(args.out) as store:
        trials = store.trials("ok")
        failed = store.counts()["failed"]
        front = store.pareto()
    rows: list[dict[str, Any]] = [
        {"name": f"front #{i + 1}", "arch": t.arch, "accuracy": t.accuracy, "latency_ms": t.latency_ms,
         "params": t.metrics.get("params"), "macs": t.metrics.get("macs")} for i, t in enumerate(front)
    ]
    for row in baselines:
        better = [r for r in rows if r["accuracy"] >= row["accuracy"] and r["latency_ms"] <= row["latency_ms"]]
        row["dominated_by"] = [r["name"] for r in better]
    print(f"\nCIFAR-10 (cifar10-jpeg:{args.shards}, {args.subset} images: {int(args.subset * 0.8)} train / "
          f"{int(args.subset * 0.2)} validation), {args.steps} proxy steps, {len(trials)} candidates "
          f"({failed} failed); search {search_wall / 60:.1f} min wall, {search_cpu / 60:.1f} min CPU")
    print(f"{'':22} {'val acc %':>9} {'latency ms':>10} {'params':>9} {'MMACs':>7}  architecture")
    for row in rows + baselines:
        print(f"{row['name']:22} {100 * row['accuracy']:9.1f} {row['latency_ms']:10.3f} {row['params']:9,} "
              f"{row['macs'] / 1e6:7.2f}  {row['arch']}")
    for row in baselines:
        verdict = ("dominated by " + ", ".join(row["dominated_by"])) if row["dominated_by"] else "not dominated by the front"
        print(f"{row['name']}: {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "search_wall_s": search_wall, "search_cpu_s": search_cpu, "candidates": len(trials), "failed": failed,
            "front": rows, "baselines": baselines, "settings": vars(args),
            "all": [{"arch": t.arch, "accuracy": t.accuracy, "latency_ms": t.latency_ms,
                     "params": t.metrics.get("params"), "seconds": t.seconds} for t in trials],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
