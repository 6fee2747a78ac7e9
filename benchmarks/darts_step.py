"""Time and memory of one DARTS search step (alpha step + weight step).

Setting of the issue: a synthetic batch of 64 at 32x32 (a training and a validation batch), the
paper's supernet (8 cells, 16 channels), 2 threads, median of 10 steps after 2 warm-ups, and the
peak resident memory (ru_maxrss) of a process that ran only that configuration.

Configurations:
- `reference`: the original code's op-by-op mixed op (every op including `none`, a ReLU per op,
  a product per op), PyTorch's default NCHW layout, every intermediate kept for backward;
- `fast`: edgenas' default (see docs/darts.md): `none` skipped, shared ReLU, dilated convs on
  pixel phases, mixture weight folded into each op's last BN, channels-last, the edges of the
  cells up to the first reduction recomputed in backward instead of kept;
- `fast-lean`: the same, recomputing every cell (least memory);
- `fast-keep`: the same, recomputing nothing (most memory).

Each runs in its own subprocess (so one's peak memory cannot hide another's). Usage:
    python benchmarks/darts_step.py                       # all, orders 1 and 2
    python benchmarks/darts_step.py --configs fast --orders 1 --steps 3 --warmup 1
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

from edgenas.util.threads import configure_threads

CONFIGS = {
    "reference": {"fast": False, "recompute": False},
    "fast": {"fast": True},  # the default: recompute the cells up to the first reduction
    "fast-lean": {"fast": True, "recompute": True},  # recompute every cell
    "fast-keep": {"fast": True, "recompute": False},  # recompute none
}


def run_child(args: argparse.Namespace) -> None:
    import torch

    from edgenas.darts.search_model import SearchNetwork, SupernetConfig
    from edgenas.darts.step import SearchHyper, make_optimizers, search_step

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    options = CONFIGS[args.child]
    model = SearchNetwork(SupernetConfig(channels=args.channels, layers=args.layers), **options).to(device)
    optimizer, architect = make_optimizers(model, SearchHyper(order=args.order))
    shape = (args.batch, 3, args.resolution, args.resolution)
    train = (torch.randn(shape, device=device), torch.randint(0, 10, (args.batch,), device=device))
    val = (torch.randn(shape, device=device), torch.randint(0, 10, (args.batch,), device=device))
    times, cpu_times = [], []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        search_step(model, optimizer, architect, train, val, 0.025, 5.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            # CPU seconds of all threads: the work done, less sensitive to other users' load.
            cpu_times.append(time.process_time() - cpu_start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
    result = {
        "config": args.child, "order": args.order, "median_s": statistics.median(times),
        "min_s": min(times), "max_s": max(times), "cpu_median_s": statistics.median(cpu_times),
        "steps": len(times), "peak_rss_gb": peak_gb,
        "load_after": os.getloadavg()[0],
    }
    if device.type == "cuda":
        result["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1e9
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="reference,fast", help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--orders", default="1,2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ref-steps", type=int, default=None,
                        help="timed steps for `reference` (default: --steps; it is slow)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--order", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    results = []
    for order in (int(o) for o in args.orders.split(",")):
        for config in args.configs.split(","):
            if config not in CONFIGS:
                sys.exit(f"unknown configuration '{config}'; choose from {', '.join(CONFIGS)}")
            load_before = os.getloadavg()[0]
            command = [sys.executable, __file__, "--child", config, "--order", str(order)]
            for name in ("steps", "warmup", "threads", "batch", "resolution", "layers", "channels", "device"):
                value = getattr(args, name)
                if config == "reference" and name == "steps" and args.ref_steps:
                    value = args.ref_steps
                command += [f"--{name}", str(value)]
            # How OpenMP threads wait, chosen as every edgenas command chooses it (by what else
            # is running: edgenas.util.threads), unless set in the environment; the same rule
            # for every configuration, and the choice is printed with the result.
            env = dict(os.environ)
            waiting = configure_threads(env)
            done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
            if done.returncode != 0:
                sys.exit(f"{config} order {order} failed:\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["load_before"] = load_before
            result["openmp"] = waiting
            results.append(result)
            print(
                f"order {order}  {config:10s}  median {result['median_s']:7.2f} s  "
                f"(min {result['min_s']:.2f}, max {result['max_s']:.2f})  "
                f"CPU {result.get('cpu_median_s', float('nan')):6.2f} s  "
                f"peak RSS {result['peak_rss_gb']:5.2f} GB  load {load_before:.1f}->{result['load_after']:.1f}  "
                f"{' '.join(f'{k}={v}' for k, v in waiting.items() if k != 'OMP_NUM_THREADS')}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
